"""HTTP endpoints: readiness and statistics, publish, membership, history, operator API, the
OpenAPI document, the console, and the one error body they share."""
