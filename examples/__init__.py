"""The bundled example workers (YAML) and the small booking system their actions call (booking_api)."""
