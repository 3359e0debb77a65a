"""`robot-rl ...`: bring up the sim graph, record demos, inspect stores.

    robot-rl sim --task pick_cube --steps 2000      the whole graph over ROS 2, twin as robot
    robot-rl record --task pick_cube -n 20 OUT      scripted-expert demos (twin) into a zarr store
    robot-rl data info|ls STORE                     what a store holds
    robot-rl data export STORE EPISODE OUT_DIR      mp4 per camera + action/proprio plot
    robot-rl pretrain --task pick_cube ...          ROS-free training in the twin (learning curves)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path


def _progress_line(st: dict, budget: str) -> str:
    a, l = st.get("actor", {}), st.get("learner", {})
    steps = int(a.get("steps", 0))
    ev = f"eval {float(a['eval_success_rate']):.0%} @{a['eval_at_steps']}  " if "eval_success_rate" in a else ""
    return (f"steps {steps}/{budget}  episodes {a.get('episodes', 0)}  {ev}"
            f"success {float(a.get('success_rate', 0)):.0%}  interventions {float(a.get('intervention_rate', 0)):.0%}  "
            f"policy v{a.get('policy_version', -1)}  updates {l.get('updates', 0)} ({l.get('updates_per_s', 0)}/s)")


def _parse_params(items) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep:
            raise SystemExit(f"robot-rl: --param wants NAME:=VALUE, got {item!r}")
        out[name] = _param_value(value)
    return out


def _param_value(text: str):
    """A -p value typed the way `ros2 run ... -p` types it: as YAML ("10" int, "[8, 8]" list,
    "true" bool); text that is not a YAML scalar or list stays a string."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str, list)) else text


def run_graph(name, params: str | None, overrides: dict, run_dir: Path, budget: str,
              namespace: str = "", restartable=("learner",)) -> tuple[int, str]:
    """Bring a graph up (robot_rl.graph: a graph's name, or (nodes, params files)), show
    progress, bring it down when the actor has spent its budget (and a learner has every logged
    step), on Ctrl-C, or when a node dies. A `restartable` node that dies is restarted instead
    (the learner resumes from its checkpoint and backfills from the actor's store; on the robot
    the actor reopens its store and its e-stop latch, while the command adapter's watchdog
    holds the arm), at most RESTARTS times a node and run, and not after the same fatal reason
    twice in a row (a failure that repeats itself)."""
    from robot_rl.bringup import Graph
    from robot_rl.graph import graph

    nodes, default_params = graph(name) if isinstance(name, str) else name
    params = str(Path(params).resolve()) if params else default_params
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    os.environ.update(env)
    g = Graph(nodes, params, overrides, run_dir, env, namespace=namespace)
    from robot_rl.nodes.monitor import Monitor

    stop = {"signal": None}
    signal.signal(signal.SIGINT, lambda s, f: stop.update(signal=s))
    signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal=s))
    print(f"  nodes: {', '.join(n.name for n in nodes)}; params {params}; logs in {run_dir / 'logs'}")
    has_learner = any(n.name == "learner" for n in nodes)
    mon = Monitor()
    taken = mon.nodes_present(n.name for n in nodes)
    if taken:  # two twins on one domain would mix their observations silently
        mon.close()
        from robot_rl.ros_domain import free_domain

        return 2, (f"another graph already runs node(s) {taken} on ROS_DOMAIN_ID="
                   f"{os.environ.get('ROS_DOMAIN_ID', '0')}; give this run a domain of its own, "
                   f"e.g. ROS_DOMAIN_ID={free_domain()} (free on this machine now)")
    g.start()
    code, reason = 0, "stopped"
    last_print, finished_at = 0.0, None
    interactive = sys.stdout.isatty()
    last_fatal: dict = {}  # node -> its fatal reason at its last restart
    try:
        while True:
            mon.spin(0.2)
            dead = g.dead()
            if len(dead) == 1 and set(dead) <= set(restartable) and stop["signal"] is None:
                (node,) = dead
                fatal = _fatal_reason(g, node)
                if g.restarts.get(node, 0) < RESTARTS and (fatal is None or fatal != last_fatal.get(node)):
                    last_fatal[node] = fatal
                    why = fatal or _exit_code_words(dead[node])
                    g.restart(node, why)
                    print(f"{chr(10) if interactive else ''}  {node} exited ({why}), restarted "
                          f"(restart {g.restarts[node]} of at most {RESTARTS})", flush=True)
                    continue
            if dead:
                code, reason = 1, _exit_reasons(g, dead)
                if g.restarts:
                    reason += " (after restarts: " + ", ".join(f"{n} {k}" for n, k in g.restarts.items()) + ")"
                break
            if stop["signal"] is not None:
                reason = "interrupted"
                break
            a, l = mon.status.get("actor", {}), mon.status.get("learner", {})
            if time.monotonic() - last_print > (0.5 if interactive else 10.0) and a:
                line = _progress_line(mon.status, budget)
                print(("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True)
                last_print = time.monotonic()
            if a.get("finished") == "True":
                finished_at = finished_at or time.monotonic()
                # Every logged step must reach the learner before the graph goes down.
                ingested = int(l.get("ingested", -1)) >= int(a.get("steps", 0)) if has_learner else True
                if ingested or time.monotonic() - finished_at > 30:
                    reason = "budget spent"
                    break
    finally:
        if interactive:
            print()
        g.stop([n for n in g.procs if n != "learner"])
        if has_learner:
            g.stop(["learner"])
        g.close()
        mon.close()
    if code:
        for node, rc in g.dead().items():
            if rc:
                print(f"--- {node} (exit {rc}), last lines of its log:\n{g.log_tail(node)}")
    return code, reason


RESTARTS = 5  # per node and run: a node that keeps dying is a fault to report, not to hide


def _fatal_reason(g, node: str) -> str | None:
    """The fatal line a node printed on its way out (robot_rl.nodes.ros.run), in its current
    life only (the log of a restarted node goes on after a "----- restart" line), else None."""
    lines = g.log_tail(node, 200).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("----- restart ")]
    fatal = [line.split("] fatal: ", 1)[1] for line in lines[(starts[-1] + 1 if starts else 0):]
             if line.startswith("[") and "] fatal: " in line]  # "[node]" if it died being built
    return fatal[-1] if fatal else None


def _exit_code_words(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            pass
    return f"exit code {rc}"


def _exit_reasons(g, dead: dict) -> str:
    """Why nodes ended, for the terminal: "learner exited: trainer stopped ...", the fatal line a
    node prints on its way out (robot_rl.nodes.ros.run), else its exit code."""
    out = []
    for node, rc in dead.items():
        fatal = _fatal_reason(g, node)
        out.append(f"{node} exited: {fatal}" if fatal else f"{node} exited early (exit code {rc})")
    return "; ".join(out)


def _run_dir(args, what: str) -> Path:
    run_dir = Path(args.run_dir or f"runs/{args.task}-{what}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def cmd_sim(args) -> int:
    run_dir = _run_dir(args, "sim")
    overrides = {"run_dir": str(run_dir), "task": args.task, "seed": args.seed, "max_steps": args.steps}
    if args.cameras is not None:
        overrides["policy_cameras"] = args.cameras
        overrides["image_size"] = args.image_size
    if args.kind:
        overrides["kind"] = args.kind
    overrides["teleop/operator"] = args.operator  # the scripted human's takeovers, as its demos
    _nproc(args, overrides)
    if args.init:
        init = Path(args.init).resolve()
        if not init.is_file():
            raise SystemExit(f"robot-rl sim: no checkpoint at {init}")
        overrides["init_checkpoint"] = str(init)
        overrides["eval_at_start"] = True  # the first evaluation measures the warm start
    print(f"robot-rl sim: {args.task}, seed {args.seed}, budget {args.steps or 'none'} steps -> {run_dir}")
    demos = _demo_store(args, run_dir)
    if demos:
        overrides["demos"] = demos
    overrides.update(_parse_params(args.param))
    graph = _sim_graph(args, overrides)
    code, reason = run_graph(graph, None, overrides, run_dir, f"{args.steps or '-'}")
    print(f"robot-rl sim: {reason}." + ("" if code else " " + _summarise(run_dir)))
    return code


def _sim_graph(args, overrides: dict):
    """The sim graph's nodes and params files; --reward classifier adds the reward classifier
    (a model from --classifier, else one trained in the twin once, robot_rl/reward/twin_model.py)."""
    from robot_rl.graph import sim_graph

    params = str(Path(args.params).resolve()) if args.params else None
    if args.reward != "classifier":
        return sim_graph("twin", params)
    cameras = [c for c in (args.cameras or "").split(",") if c]
    if args.classifier:
        model = Path(args.classifier)
        model = (model / "classifier.onnx" if model.is_dir() else model).resolve()
        if not model.is_file():
            raise SystemExit(f"robot-rl sim: no classifier model at {model}")
        from robot_rl.reward.classifier import OnnxClassifier

        camera = OnnxClassifier(str(model)).camera
    else:
        camera = cameras[0] if cameras else "wrist"
        from robot_rl.reward.twin_model import ensure_twin_classifier

        model = ensure_twin_classifier(args.task, camera, args.image_size).resolve()
    if camera not in cameras:
        # The classifier answers every observation (lock-step): its camera must be rendered
        # every step, which the twin does for the policy's cameras.
        raise SystemExit(f"robot-rl sim: --reward classifier looks at the {camera} camera: add it to --cameras "
                         f"(e.g. --cameras {','.join(cameras + [camera])})")
    overrides["reward_classifier/model"] = str(model)
    print(f"  reward: the classifier {model} on the {camera} camera (the twin's check is ground truth only)")
    return sim_graph("classifier", params)


def _demo_store(args, run_dir: Path) -> str:
    """--demos N records N scripted-expert episodes in the twin first; --demos PATH uses a store."""
    if args.demos is None or args.demos == "0":
        return ""
    if not args.demos.isdigit():  # one store or several: "demos.zarr,runs/earlier/store.zarr"
        paths = [Path(p).resolve() for p in args.demos.split(",") if p]
        for path in paths:
            if not path.exists():
                raise SystemExit(f"robot-rl sim: no demo store at {path}")
        return ",".join(str(p) for p in paths)
    from robot_rl.data.record import record_expert_episodes
    from robot_rl.twin import make_env, make_expert

    path = run_dir / "demos.zarr"
    if not path.exists():
        cams = tuple(c for c in (args.cameras or "").split(",") if c)
        env = make_env(args.task, cameras=cams, image_size=args.image_size)
        expert = make_expert(args.task, noise=0.1, seed=args.seed, operator=args.operator)
        out = record_expert_episodes(path, env, expert, int(args.demos),
                                     seed=10_000 + args.seed, source="demo", task=args.task, robot="twin")
        print(f"  demos: {out['episodes']} scripted {args.operator} episodes ({out['successes']} successful) -> {path}")
    return str(path)


def _summarise(run_dir: Path) -> str:
    out = []
    actor = run_dir / "actor_summary.json"
    learner = run_dir / "learner_summary.json"
    if actor.exists():
        a = json.loads(actor.read_text())
        v = [x for x in a["versions_used"] if x >= 0]
        versions = f"policy versions {min(v)}..{max(v)} ({len(v)} used)" if v else "no policy received"
        out.append(f"{a['steps_logged']} steps in {a['episodes']} episodes, {a['successes']} successes, "
                   f"{a['interventions']} intervened steps, {versions}")
        if a.get("evaluations"):
            ev = ", ".join(f"{e['success_rate']:.0%}@{e['train_steps']}" for e in a["evaluations"])
            out.append(f"eval success by training steps: {ev}")
    if learner.exists():
        l = json.loads(learner.read_text())
        out.append(f"learner ingested {len(l['received'])} steps, {l['updates']} updates, "
                   f"published {len(l['versions_published'])} policies")
    from robot_rl.reward.ground_truth import format_report, ground_truth_report

    truth = ground_truth_report(run_dir)
    if truth is not None:
        out.append(format_report(truth))
    out.append(f"store: {run_dir / 'store.zarr'}")
    return "; ".join(out)


def cmd_record(args) -> int:
    if args.graph:
        return _record_through_graph(args)
    if args.driver:
        print("robot-rl record: --driver needs --graph (a person drives through the teleop node)", file=sys.stderr)
        return 2
    from robot_rl.data.record import record_expert_episodes
    from robot_rl.twin import make_env, make_expert

    cams = tuple(c for c in args.cameras.split(",") if c)
    env = make_env(args.task, cameras=cams, image_size=args.image_size, randomize=args.randomize or None)
    expert = make_expert(args.task, noise=args.noise, seed=args.seed, operator=args.operator)

    def progress(ep, steps, success):
        print(f"episode {ep + 1}/{args.episodes}: {steps} steps, {'success' if success else 'failure'}", flush=True)

    out = record_expert_episodes(args.store, env, expert, args.episodes, args.seed, source="demo", task=args.task,
                                 robot="twin", progress=progress)
    print(f"recorded {out['episodes']} episodes ({out['steps']} steps, {out['successes']} successes) into {out['store']}")
    return 0


def _record_through_graph(args) -> int:
    """The live graph with the teleop holding the robot from the first step to the last: every
    step is a demonstration, logged by the actor as on the robot (source "demo")."""
    run_dir = _run_dir(args, "record")
    store = Path(args.store).resolve()
    overrides = {"run_dir": str(run_dir), "task": args.task, "seed": args.seed, "store": str(store),
                 "max_episodes": args.episodes, "episode_source": "demo", "wait_for_learner": False,
                 "wait_for_teleop": True, "teleop_wait_s": 30.0, "learner_sync_lag": 0,
                 "eval_every": 0, "expert_noise": args.noise, "takeover.always": True,
                 "teleop/operator": args.operator}
    if args.cameras:
        overrides.update(policy_cameras=args.cameras, image_size=args.image_size)
    if args.driver:  # a person drives (docs/teleop.md); the twin's success check stays the reward
        overrides["driver"] = args.driver
    overrides.update(_parse_params(args.param))
    print(f"robot-rl record: {args.episodes} episodes of {args.task} through the ROS graph -> {store}")
    code, reason = run_graph("record", args.params, overrides, run_dir, f"{args.episodes} episodes")
    if not code:
        summary = json.loads((run_dir / "actor_summary.json").read_text())
        print(f"robot-rl record: {reason}. {summary['episodes']} episodes, {summary['steps_logged']} steps, "
              f"{summary['successes']} successes -> {store}")
    return code


def _nproc(args, overrides: dict) -> None:
    """--nproc N -> the learner's nproc (else the params file's, default 1)."""
    if args.nproc is not None:
        overrides["learner/nproc"] = args.nproc


def cmd_robot(args) -> int:
    """The robot graph (robot_rl.graph.robot_graph) from config/robot.yaml, as
    launch/robot.launch.py brings it up; --twin puts the twin in the drivers' place."""
    from robot_rl.graph import robot_graph

    run_dir = _run_dir(args, "robot")
    cameras = [c for c in (args.cameras or "").split(",") if c]
    nodes, params = robot_graph(cameras, use_twin=args.twin, teleop=args.teleop != "none", learner=args.learner,
                                reward=args.reward)
    if args.params:
        params = params + [str(Path(args.params).resolve())]
    overrides = {"run_dir": str(run_dir), "task": args.task, "max_steps": args.steps, "max_episodes": args.episodes}
    if args.teleop != "none":
        overrides["teleop/driver"] = args.teleop
    if args.policy:
        overrides["policy_file"] = str(Path(args.policy).resolve())
    if args.nproc is not None and not args.learner:
        raise SystemExit("robot-rl robot: --nproc is the local learner's: give --learner too "
                         "(a learner elsewhere: robot-rl learner --nproc N there)")
    _nproc(args, overrides)
    overrides.update(_parse_params(args.param))
    where = f" in namespace {args.namespace}" if args.namespace else ""
    print(f"robot-rl robot: {args.task}{' (the twin as the drivers)' if args.twin else ''}{where} -> {run_dir}")
    # Beside the robot the actor is restarted too: it reopens its store (the open episode closed
    # as interrupted) and its e-stop latch; meanwhile the command adapter's watchdog sends zeros.
    code, reason = run_graph((nodes, params), None, overrides, run_dir, f"{args.steps or '-'}",
                             namespace=args.namespace, restartable=("learner", "actor"))
    print(f"robot-rl robot: {reason}." + ("" if code else " " + _summarise(run_dir)))
    return code


def cmd_learner(args) -> int:
    """The learner alone, e.g. on a GPU box on the robot's ROS domain (launch/learner.launch.py)."""
    run_dir = _run_dir(args, "learner")
    overrides = {"run_dir": str(run_dir), "task": args.task}
    _nproc(args, overrides)
    overrides.update(_parse_params(args.param))
    print(f"robot-rl learner: {args.task} -> {run_dir}; Ctrl-C stops it (checkpoint in the run dir)")
    code, reason = run_graph("robot_learner", args.params, overrides, run_dir, "-", namespace=args.namespace)
    print(f"robot-rl learner: {reason}.")
    return code


def cmd_estop(args) -> int:
    """Assert the e-stop (the actor holds within a tick and latches), or release it: false on the
    topic, then the actor's clear service, an explicit act."""
    from robot_rl.nodes.estop import send_estop

    ok, message = send_estop(not args.clear, namespace=args.namespace, timeout_s=args.timeout)
    print(f"robot-rl estop: {message}")
    return 0 if ok else 1


def cmd_deploy(args) -> int:
    """Override a gated learner: deploy candidate N, roll back, or the newest (docs/deployment.md)."""
    from robot_rl.nodes.deploy import send_deploy

    cmd = "rollback" if args.rollback else "latest" if args.latest else "version"
    ok, message = send_deploy(cmd, args.version, namespace=args.namespace, timeout_s=args.timeout)
    print(f"robot-rl deploy: {message}")
    return 0 if ok else 1


def cmd_calibrate_capture(args) -> int:
    from robot_rl.nodes.calib_capture import capture

    n = capture(args.out, args.camera, args.poses, namespace=args.namespace, every_s=args.every,
                count=args.count, timeout_s=args.timeout)
    print(f"robot-rl calibrate capture: {n} views in {args.out}")
    return 0


def cmd_data(args) -> int:
    from robot_rl.data import inspect as data_inspect
    from robot_rl.data.store import EpisodeStore

    try:
        store = EpisodeStore.open(args.store, mode="r")
    except (FileNotFoundError, ValueError) as e:
        print(f"robot-rl data: {e}", file=sys.stderr)
        return 2
    with store:
        if args.action == "info":
            print(data_inspect.info(store))
        elif args.action == "ls":
            print(data_inspect.ls(store))
        else:
            for path in data_inspect.export_episode(store, args.episode, args.out_dir):
                print(path)
    return 0


def cmd_pretrain(args, rest) -> int:
    from robot_rl.training import pretrain

    pretrain.main(rest)
    return 0


NPROC_HELP = ("learner processes sharing each update's batch (data-parallel over gloo on this machine; "
              "must divide batch_size; default: the params file's nproc, 1; docs/learner.md)")


def main(argv=None) -> int:
    from robot_rl.twin.experts import OPERATORS  # plain NumPy: no simulator loaded

    p = argparse.ArgumentParser(prog="robot-rl", description="robot_rl: real-robot learning over ROS 2")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sim", help="the whole graph (twin, teleop, actor, learner) over ROS 2")
    s.add_argument("--task", default="pick_cube")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--steps", type=int, default=3000, help="step budget (0 = until Ctrl-C)")
    s.add_argument("--run-dir", default=None)
    s.add_argument("--params", default=None, help="parameter YAML (default: config/sim.yaml)")
    s.add_argument("--kind", default=None, help="learner: flow | diffusion | sac | bc")
    s.add_argument("--cameras", default=None, help='policy cameras, e.g. "front,wrist" ("" = state)')
    s.add_argument("--demos", default="20",
                   help="N scripted-expert demos recorded in the twin first, or zarr store(s) for replay, comma-"
                        "separated: demos, and an earlier run's store.zarr to resume it (0 = none)")
    s.add_argument("--operator", default="expert", choices=OPERATORS,
                   help="who makes the recorded demos and drives the scripted takeovers: the scripted "
                        "expert, or a sloppy (slow, hesitant) operator (docs/twin.md)")
    s.add_argument("--image-size", type=int, default=64, help="camera resolution for pixel policies")
    s.add_argument("--reward", default="twin", choices=("twin", "classifier"),
                   help="who says an episode succeeded: the twin's check, or the reward classifier on a "
                        "policy camera (as on a robot); the twin's check is then measured as ground truth")
    s.add_argument("--classifier", default=None, metavar="MODEL",
                   help="with --reward classifier: classifier.onnx or its directory (default: one trained "
                        "in the twin, once, under runs/classifier/)")
    s.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="learner continues this agent checkpoint (robot-rl pretrain's agent.pt, a run's "
                        "learner_checkpoint.pt); same --kind and observations")
    s.add_argument("--nproc", type=int, default=None, help=NPROC_HELP)
    s.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra ROS parameter for every node, e.g. -p publish_every:=20")
    s.set_defaults(func=cmd_sim)

    r = sub.add_parser("record", help="scripted-expert demos in the twin into a zarr store")
    r.add_argument("store")
    r.add_argument("--task", default="pick_cube")
    r.add_argument("-n", "--episodes", type=int, default=20)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--noise", type=float, default=0.1, help="expert action noise")
    r.add_argument("--operator", default="expert", choices=OPERATORS,
                   help="who drives: the scripted expert, or a sloppy (slow, hesitant) operator (docs/twin.md)")
    r.add_argument("--cameras", default="", help='cameras to record, e.g. "front,wrist"')
    r.add_argument("--image-size", type=int, default=128)
    r.add_argument("--randomize", action="store_true", help="domain randomisation on")
    r.add_argument("--graph", action="store_true",
                   help="record through the live ROS graph (twin, teleop, actor) instead of the bare twin")
    r.add_argument("--run-dir", default=None, help="with --graph: logs and summaries")
    r.add_argument("--params", default=None, help="with --graph: parameter YAML")
    r.add_argument("--driver", default=None,
                   help="with --graph: a person drives: keyboard | spacemouse | gamepad | spacemouse+keyboard "
                        "(default: the scripted teleop); device settings: -p devices_file:=my_devices.yaml")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE")
    r.set_defaults(func=cmd_record)

    rb = sub.add_parser("robot", help="the robot graph: cameras, state and command adapters, actor, teleop")
    rb.add_argument("--task", default="pick_cube")
    rb.add_argument("--cameras", default="", help="camera nodes to run, e.g. front,wrist (config/robot.yaml sections camera_<name>)")
    rb.add_argument("--twin", action="store_true", help="the twin poses as the cell's drivers (no hardware)")
    rb.add_argument("--teleop", default="none", help="teleop driver: spacemouse|gamepad|keyboard|spacemouse+keyboard|none")
    rb.add_argument("--reward", default="operator", choices=("operator", "classifier"),
                    help="who says success: the person's keys (task_status) or a trained classifier "
                         "(reward_classifier, model in config/robot.yaml or -p reward_classifier/model:=...)")
    rb.add_argument("--learner", action="store_true", help="run the learner here too (else: robot-rl learner on the GPU box)")
    rb.add_argument("--nproc", type=int, default=None, help="with --learner: " + NPROC_HELP)
    rb.add_argument("--policy", default="", help="an ONNX actor to run from the start (until a learner sends a newer one)")
    rb.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = until Ctrl-C)")
    rb.add_argument("--episodes", type=int, default=0, help="stop after this many episodes (0 = no limit)")
    rb.add_argument("--namespace", default="cell", help="the cell's namespace (default cell): the contract's "
                    "relative topics (joint_states, ...) must not land on the driver's /joint_states; "
                    "cell_a, cell_b for two cells on one domain")
    rb.add_argument("--params", default=None, help="a params file on top of config/robot.yaml")
    rb.add_argument("--run-dir", default=None)
    rb.add_argument("--seed", type=int, default=0)
    rb.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE")
    rb.set_defaults(func=cmd_robot)

    ln = sub.add_parser("learner", help="the learner alone (a GPU box on the robot's ROS domain)")
    ln.add_argument("--task", default="pick_cube")
    ln.add_argument("--params", default=None, help="params file (default config/robot.yaml)")
    ln.add_argument("--namespace", default="cell", help="the cell's namespace (as robot-rl robot's)")
    ln.add_argument("--run-dir", default=None)
    ln.add_argument("--seed", type=int, default=0)
    ln.add_argument("--nproc", type=int, default=None, help=NPROC_HELP)
    ln.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE")
    ln.set_defaults(func=cmd_learner)

    es = sub.add_parser("estop", help="assert the e-stop (actor holds and latches); --clear releases it")
    es.add_argument("--clear", action="store_true")
    es.add_argument("--namespace", default="cell", help="the cell's namespace ('' for the sim graph)")
    es.add_argument("--timeout", type=float, default=10.0)
    es.set_defaults(func=cmd_estop)

    dp = sub.add_parser("deploy", help="a gated learner publishes candidate N, the previous one, or the newest")
    which = dp.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=int, help="the candidate run_dir/policies/v{N}.onnx")
    which.add_argument("--rollback", action="store_true", help="the policy deployed before the current one")
    which.add_argument("--latest", action="store_true", help="the newest candidate, accepted or not")
    dp.add_argument("--namespace", default="cell", help="the cell's namespace ('' for the sim graph)")
    dp.add_argument("--timeout", type=float, default=10.0)
    dp.set_defaults(func=cmd_deploy)

    d = sub.add_parser("data", help="inspect a zarr episode store")
    dsub = d.add_subparsers(dest="action", required=True)
    for name in ("info", "ls"):
        dsub.add_parser(name).add_argument("store")
    e = dsub.add_parser("export", help="an episode as mp4 per camera + a plot")
    e.add_argument("store")
    e.add_argument("episode", type=int)
    e.add_argument("out_dir")
    d.set_defaults(func=cmd_data)

    sub.add_parser("pretrain", help="ROS-free training in the twin; see robot-rl pretrain --help",
                   add_help=False)
    from robot_rl.calibration.commands import add_calibrate_parser

    add_calibrate_parser(sub, capture_func=cmd_calibrate_capture)  # board|intrinsics|handeye|overlay|capture
    from robot_rl.reward.commands import add_classifier_parser

    add_classifier_parser(sub)  # robot-rl classifier train|record|eval
    args, rest = p.parse_known_args(argv)
    if args.cmd == "pretrain":
        return cmd_pretrain(args, rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    random.seed(getattr(args, "seed", 0))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
