"""`{% can "deploy" endpoint as may_deploy %}`: the access rule (workspace/access.py) in templates, to show only
the actions a user may use."""

from django import template

from workspace import access

register = template.Library()


@register.simple_tag(takes_context=True)
def can(context, action: str, obj) -> bool:
    user = context.get("user") or getattr(context.get("request"), "user", None)
    return obj is not None and access.can(user, action, obj)
