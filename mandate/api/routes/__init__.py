"""HTTP routes, one router per resource, collected by ``service.app``."""
