"""Red team (issue 22): an endpoint answering 200 in another API's shape — base_url naming the
wrong kind of endpoint — made every row spend all its attempts, paid each time. It is the
endpoint's fault, the same for every row: the job fails and the manifest blocks at once."""

from __future__ import annotations

from tests.conftest import ProjectDir
from tests.stub_endpoint import StubServer

WAIT = ("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")


def test_an_answer_in_another_apis_shape_blocks_once_and_spends_no_attempt(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    with StubServer().start() as stub:
        # The stub answers in OpenAI's shape unless the path ends in /v1/messages: a query after
        # it makes it answer an Anthropic executor as an OpenAI server would.
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              executor: {{type: anthropic, base_url: "{stub.url}?tenant=a", concurrency: 1}}
            """)
        shown = run(*WAIT, code=5)
        assert "blocked: triage" in shown and "no attempt used" in shown, shown
        sent = sum(stub.seen().values())
        assert sent == 1  # one at a time: the first answer fails the job
        plan = run("plan")
        assert "blocked" in plan and "not as the Anthropic Messages API does" in plan, plan
        run(*WAIT, code=5)
        assert sum(stub.seen().values()) == sent  # blocked: nothing sent again
