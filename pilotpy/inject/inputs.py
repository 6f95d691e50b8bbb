"""What the templates are rendered from (istiod's SidecarTemplateData): the pod (without a
previous injection), its workload, Istio's values, the pod's ProxyConfig, the mesh config,
the revision, the native-sidecar decision and the proxy images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pilotpy.inject import annotations as names
from pilotpy.inject import pods
from pilotpy.inject.proxyconfig import image_type, interception_mode
from pilotpy.inject.values import InjectionValues, go_string
from pilotpy.mesh import MeshConfig

PROXY_UID = 1337
PROXY_GID = 1337
# Image types istio publishes as tag suffixes (pkg/kube/inject/inject.go).
KNOWN_IMAGE_TYPES = ("distroless", "debug")


@dataclass(frozen=True)
class TemplateInput:
    pod: pods.Pod
    workload: pods.Workload
    values: InjectionValues
    proxy_config: Mapping[str, Any]
    mesh: MeshConfig
    native: bool

    @property
    def annotations(self) -> dict[str, str]:
        return pods.annotations_of(self.pod)

    @property
    def labels(self) -> dict[str, str]:
        return pods.labels_of(self.pod)

    def annotation(self, name: str, default: Any) -> str:
        """The template's `annotation`: the pod's value when set (even empty), else the
        default as Go prints it."""
        found = self.annotations.get(name)
        return found if found is not None else go_string(default)

    @property
    def app_containers(self) -> list[str]:
        return [str(c.get("name")) for c in pods.containers(self.pod)
                if c.get("name") != pods.PROXY]

    @property
    def interception_mode(self) -> str:
        return self.annotation(names.INTERCEPTION_MODE, interception_mode(self.proxy_config))

    @property
    def native_sidecar(self) -> bool:
        """$nativeSidecar: the annotation (anything but "false" means yes), else the
        cluster's support."""
        value = self.annotations.get(names.NATIVE_SIDECAR)
        return (value if value else go_string(self.native)) != "false"

    def proxy_image(self, init: bool = False) -> str:
        """The istio-proxy (or istio-init) image: the proxyImage annotation or the values'
        image when it is a full reference (has a "/"), else hub/image:tag with the image
        type (istiod's ProxyImage and ProxyInitImage)."""
        values = self.values
        name = values.proxy_init_image if init else values.proxy.image
        chosen = self.annotation(names.PROXY_IMAGE, name)
        if "/" in chosen:
            return chosen
        kind = "" if init else image_type(self.proxy_config)
        kind = kind or values.variant
        kind = self.annotations.get(names.PROXY_IMAGE_TYPE, kind)
        return f"{values.hub}/{name or 'proxyv2'}:{tagged(values.tag, kind)}"


def tagged(tag: str, image_type: str) -> str:
    """istiod's updateImageTypeIfPresent: the tag with its image type suffix replaced."""
    if not image_type:
        return tag
    for known in KNOWN_IMAGE_TYPES:
        if tag.endswith("-" + known):
            tag = tag[: -len(known) - 1]
            break
    return tag if image_type == "default" else f"{tag}-{image_type}"
