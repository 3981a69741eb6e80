"""The API layer's routers: processing (workers), operator endpoints, health and metrics."""
