"""Scenario files: scripted answers for exact requests, for tests and demos.

A scenario is a JSON file (or the same structure as a Python dict)::

    {"default": "ok",
     "rules": [
       {"image": "menu.png", "variation": 1,
        "responses": [{"fault": "rate_limit", "retry_delay": 2}, "ok"]},
       {"sha256": "ab12…", "responses": ["deadline", "deadline", "deadline"]},
       {"language": "fr", "responses": ["no_image"], "then": "ok"},
       {"responses": ["bad_key"], "then": "bad_key"}
     ]}

Matching. Each request is matched against the rules in order; the first rule whose given
criteria ALL match is used (a rule with no criteria matches everything). Criteria:

* ``image``: a file path, resolved relative to the scenario file's folder (the current
  directory for a dict); matches when the sent image's bytes have the same sha256 as the file.
* ``sha256``: the hex sha256 of the sent image bytes.
* ``variation``: the variation number parsed from the instruction (``variation 2``; 1 if absent).
* ``language``: the language tag (``es``) or name (``Spanish``), case-insensitive, parsed from
  ``into Spanish (es)`` in the instruction.
* ``model``: the model id in the URL (``gemini-2.5-flash-image``).

Requests that match no rule are answered by the profile (``--profile``), not by ``default``.

Answers. A rule answers its ``responses`` in order, one per request, counted PER KEY (the
key is ``<sha256 of the image>:<variation>``), so concurrency cannot reorder them: with
``["rate_limit", "ok"]`` every variation gets a 429 first and succeeds on its retry. With
``"count": "global"`` the list is consumed once across all matching requests, in arrival
order. Once the list is exhausted the rule answers ``then`` for ever (default: the
scenario's ``default``, itself defaulting to ``"ok"``). ``responses`` may be omitted (only
``then`` is answered). A rule may carry a free-text ``description``.

Each answer is a fault name or ``{"fault": name, **params}``. Names: ``ok``, ``rate_limit``
(Gemini's per-minute 429: ``retry_delay``, default 2 s; ``limit``, the requests per minute
its QuotaFailure names, default 10), ``rate_limit_plain``, ``resource_exhausted`` (a 429
with no quota details; RetryInfo if ``retry_delay`` is given), ``quota_daily`` (``retry_delay``,
default 38), ``quota_zero``, ``prepay_depleted``, ``overloaded``, ``internal``, ``deadline``,
``bad_gateway_html``, ``empty_503``, ``bad_key``, ``permission_denied``, ``model_not_found``,
``location``, ``invalid_argument``, ``teapot``, ``no_image``, ``text_only``, ``image_other``,
``image_safety``, ``image_prohibited_content``, ``image_recitation``, ``max_tokens``,
``prompt_blocked``, ``empty_200``, ``error_200``, ``invalid_json``, ``several_images``,
``thought_image_then_final``, ``mislabelled_image``, ``unlabelled_image``, ``corrupt_image``,
``truncated_image``, ``one_byte_image``, ``reset`` (TCP RST), ``disconnect`` (close without
answering), ``stall`` (``seconds``, default 30, then success).

A ``batch`` section scripts the Batch API: job timing and job-level faults (EXPIRED, FAILED,
429 on create, an unknown state, late output files…); its format is in `batch_script`. The
lines inside batch jobs are answered by the ``rules`` above, like interactive requests.

`load_scenario` validates everything up front and raises `ValueError` naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imagelingo_cli.simulator.batch_script import BatchScript, parse_batch_script
from imagelingo_cli.simulator.faults import OK, FaultSpec, parse_fault
from imagelingo_cli.simulator.fields import optional_model, optional_text, reject_unknown
from imagelingo_cli.simulator.request import GenerateRequest

__all__ = ["Rule", "Scenario", "load_scenario"]

_CRITERIA = frozenset({"image", "sha256", "variation", "language", "model"})
_RULE_FIELDS = _CRITERIA | {"responses", "then", "count", "description"}
_TOP_FIELDS = frozenset({"default", "rules", "description", "batch"})
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Rule:
    """One scenario rule: criteria (None = any) and the answers it scripts."""

    index: int
    responses: tuple[FaultSpec, ...]
    then: FaultSpec
    count: Literal["key", "global"] = "key"
    sha256: str | None = None
    image: str | None = None
    variation: int | None = None
    language: str | None = None
    model: str | None = None

    def matches(self, request: GenerateRequest) -> bool:
        """Whether every criterion this rule gives holds for `request`."""
        if self.sha256 is not None and self.sha256 != request.sha256:
            return False
        if self.variation is not None and self.variation != request.variation:
            return False
        if self.model is not None and self.model != request.model:
            return False
        if self.language is not None:
            spoken = {(request.language_tag or "").lower(), (request.language_name or "").lower()}
            if self.language.lower() not in spoken:
                return False
        return True

    def answer(self, n: int) -> FaultSpec:
        """The answer to this rule's `n`-th matching request (0-based)."""
        return self.responses[n] if n < len(self.responses) else self.then


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (immutable; consumption counters live in the simulator)."""

    rules: tuple[Rule, ...]
    default: FaultSpec = OK
    source: str = "<dict>"
    batch: BatchScript = field(default_factory=BatchScript)

    def match(self, request: GenerateRequest) -> Rule | None:
        """The first rule matching `request`, or None (the profile answers)."""
        return next((rule for rule in self.rules if rule.matches(request)), None)


def load_scenario(source: Scenario | Path | str | Mapping[str, Any]) -> Scenario:
    """Load and validate a scenario from a JSON file path or a dict. Raises ValueError."""
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Mapping):
        return _build(source, Path.cwd(), "<dict>")
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"scenario {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"scenario {path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario {path}: the top level must be a JSON object")
    return _build(data, path.resolve().parent, str(path))


def _build(data: Mapping[str, Any], base: Path, source: str) -> Scenario:
    reject_unknown(data, _TOP_FIELDS, f"scenario {source}")
    default = parse_fault(data.get("default", "ok"), f"scenario {source}: default")
    rules_data = data.get("rules", [])
    if not isinstance(rules_data, list):
        raise ValueError(f'scenario {source}: "rules" must be a list')
    rules = tuple(
        _rule(i, raw, default, base, f"scenario {source}: rules[{i}]")
        for i, raw in enumerate(rules_data)
    )
    batch = (
        parse_batch_script(data["batch"], f"scenario {source}: batch")
        if "batch" in data
        else BatchScript()
    )
    return Scenario(rules=rules, default=default, source=source, batch=batch)


def _rule(index: int, raw: object, default: FaultSpec, base: Path, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a rule must be an object, got {raw!r}")
    reject_unknown(raw, _RULE_FIELDS, where)
    responses_raw = raw.get("responses", [])
    if not isinstance(responses_raw, list):
        raise ValueError(f'{where}: "responses" must be a list of fault specs')
    responses = tuple(
        parse_fault(spec, f"{where}.responses[{j}]") for j, spec in enumerate(responses_raw)
    )
    then = parse_fault(raw["then"], f"{where}.then") if "then" in raw else default
    count = raw.get("count", "key")
    if count not in ("key", "global"):
        raise ValueError(f'{where}: "count" must be "key" or "global", got {count!r}')
    return Rule(
        index=index,
        responses=responses,
        then=then,
        count=count,
        sha256=_sha256_criterion(raw, base, where),
        image=raw.get("image"),
        variation=_variation_criterion(raw, where),
        language=optional_text(raw, "language", where),
        model=optional_model(raw, where),
    )


def _sha256_criterion(raw: Mapping[str, Any], base: Path, where: str) -> str | None:
    digest: str | None = None
    if "sha256" in raw:
        value = raw["sha256"]
        if not isinstance(value, str) or not _SHA256.match(value):
            raise ValueError(f'{where}: "sha256" must be 64 hex digits, got {value!r}')
        digest = value.lower()
    if "image" in raw:
        value = raw["image"]
        if not isinstance(value, str) or not value:
            raise ValueError(f'{where}: "image" must be a file path, got {value!r}')
        path = (base / value).resolve()
        try:
            image_digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ValueError(
                f'{where}: "image" {value!r} ({path}) cannot be read: {exc.strerror or exc}'
            ) from None
        if digest is not None and digest != image_digest:
            raise ValueError(f'{where}: "image" and "sha256" name different images')
        digest = image_digest
    return digest


def _variation_criterion(raw: Mapping[str, Any], where: str) -> int | None:
    if "variation" not in raw:
        return None
    value = raw["variation"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{where}: "variation" must be an integer >= 1, got {value!r}')
    return value
