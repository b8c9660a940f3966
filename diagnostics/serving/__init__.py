"""The BentoML service definition, inside the package so that an installed wheel can serve
(`diagnostics serve` runs `diagnostics.serving.service:Diagnostics`)."""
