package exporters

import (
	"fmt"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is the service.name of every picket agent.
const ServiceName = "picket"

// NodeAttribute is the resource attribute naming the picket node (picket_node in Prometheus).
const NodeAttribute = "picket.node"

// NewResource describes this agent: service.name=picket, service.version, service.instance.id
// and picket.node set to the node name, and host.name set to the OS host name (the node name
// when the host name cannot be read). It is merged over the SDK's default resource, so
// OTEL_RESOURCE_ATTRIBUTES still adds attributes, but cannot override these.
func NewResource(node, version string) (*resource.Resource, error) {
	if node == "" {
		return nil, fmt.Errorf("build resource: empty node name (set node_name)")
	}
	if version == "" {
		version = "unknown"
	}
	hostname, err := os.Hostname()
	if err != nil || hostname == "" {
		hostname = node
	}
	own := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(ServiceName),
		semconv.ServiceVersion(version),
		semconv.ServiceInstanceID(node),
		semconv.HostName(hostname),
		attribute.String(NodeAttribute, node),
	)
	res, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return nil, fmt.Errorf("build resource for node %s: %w", node, err)
	}
	return res, nil
}
