"""`robot-rl estop [--clear]`: the operator's e-stop from a terminal.

Assert: true on the contract's latched `estop` topic; the actor holds within a tick, latches
(on disk too, so a restarted actor still holds) and says so on /diagnostics, which this waits
for. Clear: false on the topic, then the actor's `actor/clear_estop` service, the explicit act a
release needs (a false on the topic alone, e.g. from a device, never releases).
"""
from __future__ import annotations

import time

from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from robot_rl import codec, contract as C
from robot_rl.nodes.actor import CLEAR_ESTOP_SERVICE
from robot_rl.nodes.ros import OneShotNode, publisher, subscription


def send_estop(asserted: bool, namespace: str = "", timeout_s: float = 10.0) -> tuple[bool, str]:
    one = OneShotNode("estop_cli", namespace, timeout_s)
    node, spin_until = one.node, one.spin_until
    actor_state: dict = {}
    subscription(node, C.DIAGNOSTICS, lambda m: actor_state.update(codec.diagnostics_values(m, "actor") or {}))
    pub = publisher(node, C.ESTOP)
    try:
        if not spin_until(lambda: pub.get_subscription_count() > 0):
            return False, f"no node listens on {node.resolve_topic_name(C.ESTOP)} (is the graph up, in this namespace?)"
        pub.publish(Bool(data=asserted))
        if asserted:
            if spin_until(lambda: str(actor_state.get("estop")) == "True"):
                return True, "e-stop asserted: the actor holds and stays held until `robot-rl estop --clear`"
            return False, "e-stop sent, but no actor confirmed it on /diagnostics within the timeout"
        client = node.create_client(Trigger, CLEAR_ESTOP_SERVICE)
        if not spin_until(client.service_is_ready):
            return False, f"no actor offers {node.resolve_service_name(CLEAR_ESTOP_SERVICE)}"
        time.sleep(0.2)  # the false must reach the actor before the clear asks for it
        future = client.call_async(Trigger.Request())
        spin_until(future.done)
        if not future.done():
            return False, "the actor did not answer the clear request"
        response = future.result()
        return bool(response.success), response.message
    finally:
        one.close()
