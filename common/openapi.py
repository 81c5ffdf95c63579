"""drf-spectacular post-processing hook: document the error responses every API operation can
give (DRF raises them outside the views' own code), so that clients, and the schemathesis
test, know all the answers the API may return."""

ERROR_SCHEMA = {
    "type": "object",
    "description": "`{\"detail\": \"...\"}`, or for a 400 one list of messages per field "
                   "(`non_field_errors` for the body as a whole).",
    "additionalProperties": {},
}

_ERRORS = {
    "400": "Invalid input: every field error at once.",
    "401": "No or bad credentials.",
    "403": "Authenticated, but without the permission for this action.",
    "404": "No such object (or no such page of a list).",
    "415": "The body's Content-Type is not one the operation reads.",
    "429": "Too many requests (throttled); retry after the Retry-After header's seconds.",
}


def error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            codes = {"429"}
            if operation.get("security") != [{}] and {} not in operation.get("security", []):
                codes |= {"401", "403"}
            if method in ("post", "put", "patch") or "{" in path or "parameters" in operation:
                codes.add("400")
            if "requestBody" in operation:
                codes.add("415")
            if "{" in path or any(p.get("name") == "page" for p in operation.get("parameters", [])):
                codes.add("404")
            for code in sorted(codes):
                operation.setdefault("responses", {}).setdefault(
                    code, {"description": _ERRORS[code], "content": ref})
    return result
