"""Plumbing shared by both Django projects and their processes: trace ids and logs (``trace``,
``logs``), health probes (``health``), Prometheus metrics (``metrics``, ``gunicorn_conf``) and
API conventions (``openapi``, ``pagination``). Business code never depends on it, except to
read the current trace id."""
