"""The test doubles themselves: a scripted reply after real compute."""

from __future__ import annotations

from agentkit.mllm.backends.base import Message
from agentkit.testing import ComputeThenScript, ScriptedBackend


def test_compute_then_script_pays_the_model_and_answers_the_script():
    class Counting(ScriptedBackend):
        def generate(self, messages, **kw):
            self.asked = kw
            return super().generate(messages, **kw)

    model = Counting([{"text": "model text", "sleep": 0.02}] * 3, name="real")
    backend = ComputeThenScript(model, ["first", "last"], tokens=7)
    msgs = [Message(role="user", content="How many cubes?")]
    texts = [backend.generate(msgs).text for _ in range(3)]
    assert texts == ["first", "last", "last"]  # the script, its last reply repeating
    assert len(model.calls) == 3 and model.asked == {"max_new_tokens": 7}
    assert backend.model_seconds >= 3 * 0.02  # the model's time is counted
    assert backend.name == "real+script"
