"""Start-up checks of the fraud engine's configuration (Django's check framework).

``FRAUD_RULE_WEIGHTS`` and ``FRAUD_RULE_PARAMS`` come from the environment as JSON: a typo in a
name or a value of the wrong type must stop ``manage.py check`` / ``migrate`` / the server at start,
never turn every score update into a 500.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from fraud import rules


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register()
def fraud_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    weights = getattr(settings, "FRAUD_RULE_WEIGHTS", {})
    if not isinstance(weights, dict):
        errors.append(Error("FRAUD_RULE_WEIGHTS must be a JSON object of rule name -> weight.", id="fraud.E001"))
        weights = {}
    for name, weight in weights.items():
        if name not in rules.RULES:
            errors.append(
                Error(
                    f"FRAUD_RULE_WEIGHTS names an unknown rule {name!r}.",
                    hint=f"Known rules: {', '.join(sorted(rules.RULES))}.",
                    id="fraud.E002",
                )
            )
        elif not _number(weight) or weight < 0:
            errors.append(
                Error(f"FRAUD_RULE_WEIGHTS[{name!r}] must be a number >= 0, not {weight!r}.", id="fraud.E003")
            )
    params = getattr(settings, "FRAUD_RULE_PARAMS", {})
    fields = {f.name: f for f in dataclasses.fields(rules.RuleConfig) if f.name != "action_types"}
    if not isinstance(params, dict):
        errors.append(Error("FRAUD_RULE_PARAMS must be a JSON object of parameter -> value.", id="fraud.E004"))
        params = {}
    for name, value in params.items():
        if name not in fields:
            errors.append(
                Error(
                    f"FRAUD_RULE_PARAMS names an unknown parameter {name!r}.",
                    hint=f"Known parameters: {', '.join(sorted(fields))}.",
                    id="fraud.E005",
                )
            )
            continue
        default = fields[name].default
        wants_int = isinstance(default, int) and not isinstance(default, bool)
        if not _number(value) or (wants_int and not float(value).is_integer()) or value < 0:
            kind = "a whole number" if wants_int else "a number"
            errors.append(Error(f"FRAUD_RULE_PARAMS[{name!r}] must be {kind} >= 0, not {value!r}.", id="fraud.E006"))
    if not errors:
        try:
            from fraud.services import rule_config

            rule_config()
        except (TypeError, ValueError, KeyError) as exc:
            errors.append(Error(f"The fraud rules cannot be configured: {exc}", id="fraud.E007"))
    for name in ("FRAUD_FLAG_THRESHOLD", "FRAUD_QUARANTINE_THRESHOLD", "FRAUD_BLOCK_THRESHOLD"):
        value = getattr(settings, name, None)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            errors.append(Error(f"{name} must be a number >= 0 (above 1 turns that outcome off).", id="fraud.E008"))
    return errors
