"""The proxyless gRPC generator (istiod's pilot/pkg/networking/grpcgen): what a gRPC
library's own xDS client (node metadata `GENERATOR: grpc`) accepts. Client listeners are
API listeners named `<host>:<port>` after the target a channel dials, routed through RDS
with the fault and router filters only; xDS-enabled servers get inbound listeners named
`xds.istio.io/grpc/lds/inbound/<ip>:<port>`; clusters are EDS clusters with what gRPC can
balance. What gRPC cannot express is reported as a problem, never sent to be rejected
(docs/proxyless-grpc.md)."""
