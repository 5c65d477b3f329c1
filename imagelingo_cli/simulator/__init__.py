"""A local stand-in for the Gemini API's ``generateContent``, for demos, tests and benchmarks.

It speaks the real REST protocol, so an unmodified google-genai client works against it::

    from imagelingo_cli.simulator import Simulator

    with Simulator("flaky", seed=1) as sim:
        client = genai.Client(api_key="any", http_options=types.HttpOptions(
            base_url=sim.base_url, api_version="v1beta"))
        ...
        sim.stats()   # requests, in_flight, max_in_flight, by_key, outcomes, last_request

A success returns the input image with a visible band naming language and variation; faults
return the API's real error bodies (see `faults`). Profiles (`profiles`): ``ok``, ``flaky``,
``rate-limited``, ``outage``. A scenario (`scenario`, format in its docstring) scripts exact
answers per request. Modules: `server` (HTTP), `request` (protocol checks), `profiles`
(who gets which answer), `scenario`, `faults` (bodies), `marking` (images).

It serves the Batch API flow too (``client.batches``, ``client.files``): `batch_routes`
(HTTP), `batches` (the jobs), `batch_jobs` (one job on the clock, its lines, its output),
`files` (uploads and stored files), `batch_script` (the scenario's ``batch`` section:
timing and job-level faults), `timeline` (the injectable clock)::

    with Simulator("ok", clock=clock, batch_pending=10, batch_running=20) as sim:
        job = client.batches.create(model=..., src=client.files.upload(...).name)
        clock.advance(30)   # a test's clock: PENDING -> RUNNING -> SUCCEEDED, no sleeping
"""

from imagelingo_cli.simulator.batch_script import BatchScript, JobRule
from imagelingo_cli.simulator.faults import FAULTS, FaultSpec
from imagelingo_cli.simulator.profiles import PROFILES
from imagelingo_cli.simulator.scenario import Scenario, load_scenario
from imagelingo_cli.simulator.server import Simulator

__all__ = [
    "FAULTS",
    "PROFILES",
    "BatchScript",
    "FaultSpec",
    "JobRule",
    "Scenario",
    "Simulator",
    "load_scenario",
]
