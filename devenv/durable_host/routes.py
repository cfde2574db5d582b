"""ASP.NET-style route templates of HTTP triggers: {param}, {param?}, {param:constraint}, {*rest}."""

from __future__ import annotations

import re
from dataclasses import dataclass

PARAMETER = re.compile(r"^\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::[^}?=]+)*(\?)?(?:=[^}]*)?\}$")


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def compile_route(template: str) -> RouteTemplate:
    regex = ""
    literals = 0
    for index, segment in enumerate(s for s in template.strip("/").split("/") if s != ""):
        slash = "/" if index else ""
        parameter = PARAMETER.match(segment)
        if parameter is None:
            regex += slash + re.escape(segment)
            literals += 1
            continue
        catch_all, name, optional = parameter.groups()
        value = f"(?P<{name}>.+)" if catch_all else f"(?P<{name}>[^/]+)"
        if optional or catch_all:
            regex += f"(?:{slash}{value})?"
        else:
            regex += slash + value
    return RouteTemplate(template, re.compile(regex, re.IGNORECASE), literals)
