# The pilotpy image used by manifests/pilotpy.yaml (`make kind-load` builds and loads it).
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY pilotpy ./pilotpy
RUN pip install --no-cache-dir -c constraints.txt . && rm -rf /src
WORKDIR /
USER 1337:1337
EXPOSE 15010 15012 8080 15014
ENTRYPOINT ["pilotpy"]
CMD ["serve", "--kube"]
