"""Composition root: one FunctionApp built from the blueprints in ``triggers/``."""

import azure.functions as func

from core.settings import get_settings
from infrastructure.logging import set_levels
from triggers.http.admin import bp as admin_bp
from triggers.http.containers import bp as containers_bp
from triggers.http.jobs import bp as jobs_bp
from triggers.http.stac import bp as stac_bp
from triggers.http.system import bp as system_bp
from triggers.workers import bp as workers_bp

set_levels(get_settings().app.log_level)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(admin_bp)
app.register_functions(containers_bp)
app.register_functions(jobs_bp)
app.register_functions(stac_bp)
app.register_functions(system_bp)
app.register_functions(workers_bp)
