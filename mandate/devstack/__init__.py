"""The dev-stack room: embedded Postgres, OpenFGA and Keycloak processes, the demo world and the demo
APIs. Used by ``mandate dev``, the tests and the benchmarks; production code paths never import it."""
