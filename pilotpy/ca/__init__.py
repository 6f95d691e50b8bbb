"""The mesh CA, as istiod's built-in one: key material (plugged-in `cacerts`, the self-signed
`istio-ca-secret`, a directory or memory), signing workload CSRs for authenticated callers
(`IstioCertificateService/CreateCertificate` on :15012), and the serving certificate of :15012.
"""
