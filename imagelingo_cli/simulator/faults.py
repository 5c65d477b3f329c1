"""What the simulator answers: canned Gemini bodies, success and failure, byte for byte.

Every answer is a `Reply`. Error bodies are `google.rpc.Status` rendered the way the Gemini API
renders them: pretty-printed JSON with 2-space indentation and a trailing newline, served as
`application/json; charset=UTF-8`, with no `Retry-After` header (the wait lives only in
`RetryInfo.retryDelay` and in "Please retry in Ns." inside the message).

Successes follow the model: Gemini 3 image models (``gemini-3*``, ``nano-banana*``) answer
``image/jpeg``, think (``thoughtsTokenCount``) and sign their image parts (``thoughtSignature``);
``gemini-2.5-flash-image`` answers ``image/png``. Refusals carry Google's own `finishMessage`
wording, collected from real answers.

A fault spec (in a scenario file, or chosen by a profile) is a fault name or a dict
`{"fault": name, **params}`; `parse_fault` validates it against `FAULT_PARAMS`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from imagelingo_cli.simulator.marking import Rendering

__all__ = [
    "FAULTS",
    "FAULT_PARAMS",
    "IMAGE_ANSWERS",
    "Context",
    "FaultSpec",
    "Reply",
    "error_reply",
    "fault_reply",
    "format_duration",
    "image_reply",
    "json_reply",
    "parse_fault",
]

JSON_TYPE = "application/json; charset=UTF-8"

# name -> the parameters it takes (numbers: seconds, except rate_limit's `limit`, the
# requests per minute its QuotaFailure names)
FAULT_PARAMS: Mapping[str, frozenset[str]] = {
    "ok": frozenset(),
    "rate_limit": frozenset({"retry_delay", "limit"}),
    "rate_limit_plain": frozenset(),
    "resource_exhausted": frozenset({"retry_delay"}),
    "quota_daily": frozenset({"retry_delay"}),
    "quota_zero": frozenset({"retry_delay"}),
    "prepay_depleted": frozenset(),
    "overloaded": frozenset(),
    "internal": frozenset(),
    "deadline": frozenset(),
    "bad_gateway_html": frozenset(),
    "empty_503": frozenset(),
    "bad_key": frozenset(),
    "permission_denied": frozenset(),
    "model_not_found": frozenset(),
    "location": frozenset(),
    "invalid_argument": frozenset(),
    "teapot": frozenset(),
    "no_image": frozenset(),
    "text_only": frozenset(),
    "image_other": frozenset(),
    "image_safety": frozenset(),
    "image_prohibited_content": frozenset(),
    "image_recitation": frozenset(),
    "max_tokens": frozenset(),
    "prompt_blocked": frozenset(),
    "empty_200": frozenset(),
    "error_200": frozenset(),
    "invalid_json": frozenset(),
    "reset": frozenset(),
    "disconnect": frozenset(),
    "stall": frozenset({"seconds"}),
    "several_images": frozenset(),
    "thought_image_then_final": frozenset(),
    "mislabelled_image": frozenset(),
    "unlabelled_image": frozenset(),
    "corrupt_image": frozenset(),
    "truncated_image": frozenset(),
    "one_byte_image": frozenset(),
}
FAULTS: frozenset[str] = frozenset(FAULT_PARAMS)
# Answers holding image parts, made from the request's `Rendering` (`image_reply`).
IMAGE_ANSWERS: frozenset[str] = frozenset(
    {
        "ok",
        "stall",
        "several_images",
        "thought_image_then_final",
        "mislabelled_image",
        "unlabelled_image",
        "corrupt_image",
        "truncated_image",
        "one_byte_image",
    }
)

_DEFAULT_PARAMS: Mapping[str, Mapping[str, float]] = {
    "rate_limit": {"retry_delay": 2.0, "limit": 10},
    "quota_daily": {"retry_delay": 38.0},
    "quota_zero": {"retry_delay": 26.0},
    "stall": {"seconds": 30.0},
}

_TROUBLESHOOTING = "https://developers.generativeai.google/guide/troubleshooting"
_RATE_LIMITS_DOC = "https://ai.google.dev/gemini-api/docs/rate-limits"


@dataclass(frozen=True)
class FaultSpec:
    """One scripted answer: a fault name from `FAULTS` and its parameters."""

    name: str
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, key: str) -> float:
        """A parameter, or its documented default."""
        if key in self.params:
            return self.params[key]
        return _DEFAULT_PARAMS[self.name][key]

    def to_json(self) -> str | dict[str, Any]:
        """The spec as a scenario file would write it."""
        return {"fault": self.name, **self.params} if self.params else self.name


OK = FaultSpec("ok")


def parse_fault(spec: object, where: str = "fault") -> FaultSpec:
    """Validate a fault spec (`"deadline"` or `{"fault": "rate_limit", "retry_delay": 2}`)."""
    if isinstance(spec, FaultSpec):
        return spec
    if isinstance(spec, str):
        name, raw_params = spec, {}
    elif isinstance(spec, dict):
        if "fault" not in spec:
            raise ValueError(f'{where}: a dict fault spec needs a "fault" key, got {spec!r}')
        name = spec["fault"]
        raw_params = {k: v for k, v in spec.items() if k != "fault"}
    else:
        raise ValueError(f"{where}: expected a fault name or a dict, got {spec!r}")
    if not isinstance(name, str) or name not in FAULTS:
        known = ", ".join(sorted(FAULTS))
        raise ValueError(f"{where}: unknown fault {name!r} (known: {known})")
    params: dict[str, float] = {}
    for key, value in raw_params.items():
        if key not in FAULT_PARAMS[name]:
            allowed = ", ".join(sorted(FAULT_PARAMS[name])) or "none"
            raise ValueError(f"{where}: fault {name!r} takes no {key!r} (parameters: {allowed})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{where}: {name}.{key} must be a number >= 0, got {value!r}")
        params[key] = float(value)
    return FaultSpec(name, params)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, or a way of not answering (`reset`: TCP RST, `disconnect`: FIN)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    action: Literal["respond", "reset", "disconnect"] = "respond"


@dataclass(frozen=True)
class Context:
    """What a canned body may mention about the request it answers."""

    model: str = "gemini-2.5-flash-image"
    api_version: str = "v1beta"
    language_tag: str | None = None
    language_name: str | None = None
    variation: int = 1
    prompt_text: str = ""
    response_id: str = "c2ltdWxhdG9yLXJlc3BvbnNl"


def format_duration(seconds: float) -> str:
    """A protobuf-Duration-style string: 2 -> "2s", 0.5 -> "0.5s", 0.7342 -> "0.734s"."""
    millis = max(0, round(seconds * 1000))
    whole, frac = divmod(millis, 1000)
    return f"{whole}s" if frac == 0 else f"{whole}.{frac:03d}".rstrip("0") + "s"


def json_reply(status: int, payload: object) -> Reply:
    """A JSON body, pretty-printed with 2 spaces and a trailing newline, as Google serves it."""
    body = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    return Reply(status, body.encode("utf-8"), JSON_TYPE)


def _status_payload(
    code: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_reply(
    code: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> Reply:
    """A `{"error": {code, message, status, details}}` envelope with HTTP status `code`."""
    return json_reply(code, _status_payload(code, status, message, details))


# --- errors the protocol itself produces (also reused by faults) ---------------------------


def unregistered_caller() -> Reply:
    """403: the request carried no API key."""
    return error_reply(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def api_key_invalid() -> Reply:
    """400 API_KEY_INVALID."""
    message = "API key not valid. Please pass a valid API key."
    return error_reply(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def model_not_found(model: str, api_version: str) -> Reply:
    """404 for a model id the API does not serve."""
    return error_reply(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version {api_version}, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def invalid_argument(message: str) -> Reply:
    """400 INVALID_ARGUMENT with the given message."""
    return error_reply(400, "INVALID_ARGUMENT", message)


def path_not_found(path: str) -> Reply:
    """404 for a path the simulator does not serve."""
    return error_reply(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")


# --- 429 family ----------------------------------------------------------------------------


def _quota_reply(
    *,
    ctx: Context,
    metric: str,
    quota_id: str,
    limit: int,
    retry_delay: float,
) -> Reply:
    delay = format_duration(retry_delay)
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        f"information on this error, head to: {_RATE_LIMITS_DOC}. To monitor your current "
        "usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {ctx.model}\n"
        f"Please retry in {delay.removesuffix('s')}s."
    )
    violation: dict[str, Any] = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": ctx.model},
    }
    if limit:  # proto3 JSON omits an int64 zero
        violation["quotaValue"] = str(limit)
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": _RATE_LIMITS_DOC}
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return error_reply(429, "RESOURCE_EXHAUSTED", message, details)


def rate_limit(ctx: Context, retry_delay: float, limit: int) -> Reply:
    """429 for the per-minute request quota of `limit` requests, with QuotaFailure, Help and
    RetryInfo (`retry_delay`: until the next request the quota lets through)."""
    return _quota_reply(
        ctx=ctx,
        metric="generativelanguage.googleapis.com/generate_requests_per_model",
        quota_id="GenerateRequestsPerMinutePerProjectPerModel",
        limit=limit,
        retry_delay=retry_delay,
    )


def resource_exhausted(retry_delay: float | None) -> Reply:
    """429 without quota details: shared capacity ran out for a moment, not a quota of ours.
    RetryInfo only when `retry_delay` is given."""
    details: list[dict[str, Any]] = []
    if retry_delay is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format_duration(retry_delay),
            }
        )
    return error_reply(
        429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", details
    )


# --- 200 bodies ----------------------------------------------------------------------------

_GEMINI_3 = re.compile(r"^(gemini-3|gemini-nano-banana|nano-banana)")


@dataclass(frozen=True)
class _Model:
    """How a model's answers look: its image format, tokens per image, thinking tokens."""

    mime_type: str
    image_tokens: int
    thoughts_tokens: int  # 0: the model does not think

    @classmethod
    def of(cls, model: str) -> _Model:
        if not _GEMINI_3.match(model):
            return cls("image/png", 1290, 0)
        return cls("image/jpeg", 1120, 0 if "lite" in model else 180)


def _usage(ctx: Context, candidates_tokens: int, thoughts_tokens: int = 0) -> dict[str, Any]:
    text_tokens = max(1, len(ctx.prompt_text) // 4)
    prompt = 1290 + text_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + candidates_tokens + thoughts_tokens,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": text_tokens},
            {"modality": "IMAGE", "tokenCount": 1290},
        ],
    }
    if candidates_tokens:
        usage["candidatesTokenCount"] = candidates_tokens
    if thoughts_tokens:
        usage["thoughtsTokenCount"] = thoughts_tokens
    return usage


def _answer(
    ctx: Context,
    candidate: dict[str, Any] | None,
    candidates_tokens: int,
    thoughts_tokens: int = 0,
    **extra: Any,
) -> Reply:
    payload: dict[str, Any] = {}
    if candidate is not None:
        payload["candidates"] = [{**candidate, "index": 0}]
    payload.update(extra)
    payload["usageMetadata"] = _usage(ctx, candidates_tokens, thoughts_tokens)
    payload["modelVersion"] = ctx.model
    payload["responseId"] = ctx.response_id
    return json_reply(200, payload)


def _language(ctx: Context) -> str:
    return ctx.language_name or ctx.language_tag or "the requested language"


def _inline(data: bytes, mime_type: str | None) -> dict[str, Any]:
    inline: dict[str, Any] = {"data": base64.b64encode(data).decode("ascii")}
    if mime_type is not None:
        inline["mimeType"] = mime_type
    return {"inlineData": inline}


def image_reply(spec: FaultSpec, ctx: Context, rendering: Rendering, *, with_text: bool) -> Reply:
    """200 with image parts: the translation in the model's format (``ok``, ``stall``), or one
    of the ways a real answer's images go wrong."""
    model = _Model.of(ctx.model)
    mime = model.mime_type
    name = spec.name
    if name == "mislabelled_image":  # JPEG bytes declared as PNG
        final = _inline(rendering.final("image/jpeg"), "image/png")
    elif name == "unlabelled_image":
        final = _inline(rendering.final(mime), None)
    elif name == "corrupt_image":  # a PNG whose middle was overwritten: its CRCs fail
        data = bytearray(rendering.final("image/png"))
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
        final = _inline(bytes(data), "image/png")
    elif name == "truncated_image":
        png = rendering.final("image/png")
        final = _inline(png[: len(png) // 2], "image/png")
    elif name == "one_byte_image":
        final = _inline(b"\x00", "image/png")  # "AA==", seen in the wild
    else:
        final = _inline(rendering.final(mime), mime)
    parts: list[dict[str, Any]] = [final]
    if name == "several_images":  # two renders, neither a thought: the last is the answer
        parts.insert(0, _inline(rendering.draft(mime), mime))
    if model.thoughts_tokens:  # a thinking model signs every image it answers with
        parts = [{**part, "thoughtSignature": _signature(ctx, i)} for i, part in enumerate(parts)]
    if name == "thought_image_then_final":
        parts[:0] = [
            {"text": "Planning the layout of the translated text.", "thought": True},
            {**_inline(rendering.draft(mime), mime), "thought": True},
        ]
    if with_text:
        parts.insert(
            0, {"text": f"Here is the image with its text translated into {_language(ctx)}."}
        )
    candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": "STOP"}
    images = sum(1 for part in parts if "inlineData" in part and not part.get("thought"))
    return _answer(
        ctx,
        candidate,
        images * model.image_tokens + (12 if with_text else 0),
        model.thoughts_tokens,
    )


def _signature(ctx: Context, index: int) -> str:
    """An opaque thought signature, stable for one answer."""
    digest = hashlib.sha256(f"{ctx.response_id}:{index}".encode()).digest()
    return base64.b64encode(digest * 4).decode("ascii")


_HTML_502 = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error 502 (Server Error)!!1</title>
  <style>
    *{margin:0;padding:0}html,code{font:15px/22px arial,sans-serif}html{background:#fff;color:#222;
    padding:15px}body{margin:7% auto 0;max-width:390px;min-height:180px;padding:30px 0 15px}
  </style>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>502.</b> <ins>That’s an error.</ins>
  <p>The server encountered a temporary error and could not complete your request.
  <p>Please try again in 30 seconds.  <ins>That’s all we know.</ins>
"""

_CAPTIVE_PORTAL = """<!DOCTYPE html>
<html>
<head><title>Welcome! Sign in to continue</title></head>
<body>
<h1>Guest Wi-Fi</h1>
<p>Please accept the terms of use to access the Internet.</p>
<form method="post" action="/login"><button type="submit">Accept and connect</button></form>
</body>
</html>
"""


def fault_reply(spec: FaultSpec, ctx: Context) -> Reply:
    """The canned answer for a fault; those in IMAGE_ANSWERS are made by `image_reply`."""
    name = spec.name
    if name == "rate_limit":
        return rate_limit(ctx, spec.param("retry_delay"), round(spec.param("limit")))
    if name == "rate_limit_plain":
        return Reply(429, b"Too Many Requests", "text/plain; charset=UTF-8")
    if name == "resource_exhausted":
        return resource_exhausted(spec.params.get("retry_delay"))
    if name == "quota_daily":
        return _quota_reply(
            ctx=ctx,
            metric="generativelanguage.googleapis.com/generate_requests_per_model_per_day",
            quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            limit=100,
            retry_delay=spec.param("retry_delay"),
        )
    if name == "quota_zero":
        return _quota_reply(
            ctx=ctx,
            metric="generativelanguage.googleapis.com/generate_content_free_tier_requests",
            quota_id="GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            limit=0,
            retry_delay=spec.param("retry_delay"),
        )
    if name == "prepay_depleted":
        return error_reply(
            402,
            "RESOURCE_EXHAUSTED",
            "Your prepayment credits are depleted. Please go to AI Studio at "
            "https://ai.studio/projects to manage your project and billing.",
        )
    if name == "overloaded":
        return error_reply(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if name == "internal":
        return error_reply(500, "INTERNAL", _internal_message())
    if name == "deadline":
        return error_reply(504, "DEADLINE_EXCEEDED", "The request timed out. Please try again.")
    if name == "bad_gateway_html":
        return Reply(502, _HTML_502.encode("utf-8"), "text/html; charset=UTF-8")
    if name == "empty_503":
        return Reply(503, b"", None)
    if name == "bad_key":
        return api_key_invalid()
    if name == "permission_denied":
        return error_reply(403, "PERMISSION_DENIED", "The caller does not have permission")
    if name == "model_not_found":
        return model_not_found(ctx.model, ctx.api_version)
    if name == "location":
        return error_reply(
            400, "FAILED_PRECONDITION", "User location is not supported for the API use."
        )
    if name == "invalid_argument":
        return invalid_argument(
            f"Unable to process input image. Please retry or report in {_TROUBLESHOOTING}"
        )
    if name == "teapot":
        return error_reply(418, "UNKNOWN", "I'm a teapot: the simulator refuses to brew images.")
    return _odd_answer(spec, ctx)


# name -> (finishReason, finishMessage, content), in Google's words where it sends some
# (BerriAI/litellm#20357, public recordings of gemini-3-pro-image and 3.1-flash-image).
_REFUSALS: Mapping[str, tuple[str, str | None, dict[str, Any]]] = {
    "image_other": (
        "IMAGE_OTHER",
        "Unable to show the generated image. The model could not generate the image based on "
        "the prompt provided. You will not be charged for this request. Try rephrasing the "
        "prompt.",
        {},
    ),
    "image_safety": (
        "IMAGE_SAFETY",
        "Unable to show the generated image. The image was filtered out because it violated "
        "Google's Generative AI Prohibited Use policy. You will not be charged for blocked "
        "images. Try rephrasing the prompt.",
        {},
    ),
    "image_prohibited_content": (
        "IMAGE_PROHIBITED_CONTENT",
        "The model output could not be generated. This output contains sensitive words that "
        "violate Google's Responsible AI practices. If you think this was an error, send "
        "feedback. Support code: 42876398.",
        {"role": "model"},
    ),
    "image_recitation": ("IMAGE_RECITATION", None, {"parts": []}),
    "max_tokens": ("MAX_TOKENS", None, {"role": "model"}),
}


def _internal_message() -> str:
    return f"An internal error has occurred. Please retry or report in {_TROUBLESHOOTING}"


def _odd_answer(spec: FaultSpec, ctx: Context) -> Reply:
    """The 200s that hold no image, and the ways of not answering at all."""
    name = spec.name
    thoughts = _Model.of(ctx.model).thoughts_tokens  # a thinking model thought before refusing
    candidate: dict[str, Any]
    if name == "no_image":  # as the API answers it: no parts, no message, prompt-only usage
        return _answer(ctx, {"content": {}, "finishReason": "NO_IMAGE"}, 0)
    if name == "text_only":
        text = f"Sure! Here is the translated text in {_language(ctx)}: ..."
        candidate = {"content": {"parts": [{"text": text}], "role": "model"}}
        return _answer(ctx, {**candidate, "finishReason": "STOP"}, 16)
    if name in _REFUSALS:
        reason, message, content = _REFUSALS[name]
        candidate = {"content": content, "finishReason": reason}
        if message:
            candidate["finishMessage"] = message
        return _answer(ctx, candidate, 0, thoughts)
    if name == "prompt_blocked":
        return _answer(ctx, None, 0, promptFeedback={"blockReason": "PROHIBITED_CONTENT"})
    if name == "empty_200":
        return json_reply(200, {})
    if name == "error_200":
        return json_reply(200, _status_payload(500, "INTERNAL", _internal_message()))
    if name == "invalid_json":
        return Reply(200, _CAPTIVE_PORTAL.encode("utf-8"), "text/html; charset=UTF-8")
    if name == "reset":
        return Reply(action="reset")
    if name == "disconnect":
        return Reply(action="disconnect")
    raise ValueError(f"fault {name!r} has no canned answer")  # image answers: image_reply
