"""`robot-rl deploy (--version N | --rollback | --latest)`: the operator overrides the gate.

Sends one request on the contract's `learner/deploy` topic (JSON with an id) to a learner whose
gate is on, and waits for the learner's answer on /diagnostics (status "learner_gate", the same
id): it names the candidate deployed and the version number it went out under, or why not
(an unknown version, nothing to roll back to). The learner publishes the policy; the actor takes
it like any other (verified, or its last good policy stays).
"""
from __future__ import annotations

import json
import time
import uuid

from std_msgs.msg import String

from robot_rl import contract as C
from robot_rl.nodes.ros import OneShotNode, publisher, subscription


def send_deploy(cmd: str, version: int | None = None, namespace: str = "", timeout_s: float = 10.0) -> tuple[bool, str]:
    """cmd: "version" (with version), "rollback" or "latest". -> (ok, the learner's answer)."""
    one = OneShotNode("deploy_cli", namespace, timeout_s)
    node, spin_until = one.node, one.spin_until
    rid = uuid.uuid4().hex[:12]
    answer: dict = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name == "learner_gate":
                values = {kv.key: kv.value for kv in st.values}
                if values.get("request_id") == rid:
                    answer.update(values, message=st.message)

    subscription(node, C.DIAGNOSTICS, on_diag)
    pub = publisher(node, C.DEPLOY)
    try:
        if not spin_until(lambda: pub.get_subscription_count() > 0):
            return False, (f"no learner listens on {node.resolve_topic_name(C.DEPLOY)} (is it up, in this "
                           "namespace, with gate.enabled?)")
        time.sleep(0.2)  # the learner's /diagnostics publisher must have matched ours before it answers
        one.executor.spin_once(timeout_sec=0.05)
        request = {"cmd": cmd, "id": rid, **({"version": int(version)} if version is not None else {})}
        pub.publish(String(data=json.dumps(request)))
        if not spin_until(lambda: bool(answer)):
            return False, "request sent, but no learner answered on /diagnostics within the timeout"
        return answer.get("request_ok") == "True", answer.get("message", "")
    finally:
        one.close()
