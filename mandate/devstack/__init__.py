"""The dev-stack room: embedded Postgres, OpenFGA, Keycloak and Jaeger processes, the demo world and the demo
APIs. Used by ``mandate dev``, the tests and the benchmarks; production code paths never import it."""
