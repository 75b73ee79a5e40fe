#!/usr/bin/env python3
"""The rendered agent pipeline in a real fluent-bit, against its routing-free ceiling.

Usage (operator/benches/README.md):

    agent_fluent_bit.py --fluent-bit PATH --sluice PATH [--flows 10,100,1000,10000]
                        [--records 400000] [--pods 20] [--rate 0] [--runs 1]

It neither builds nor downloads fluent-bit: bring your own binary. Needs python3 with
PyYAML and msgpack. For each flow count it writes a Logging with N Flows (10 namespaces,
N/10 Flows each, each selecting `app: app-<i>`), renders it with `sluice render` (the
operator's own renderer), and runs the rendered `fluent-bit.yaml` with only its endpoints
moved to a scratch directory:

- input: CRI log files named as the kubelet names them, one per pod, read by the rendered
  tail input; Kubernetes metadata comes from the kubernetes filter's preload cache (one
  Pod document per pod), so no API server is needed;
- output: the rendered forward output, pointed at a forward receiver in this script, which
  acknowledges every chunk and counts each record per tag, checking sequence numbers (no
  loss, no duplicate, every copy at the flow that should get it). TLS and the shared key
  are switched off (the receiver does not speak them).

Half the pods are taken by one Flow each (distinct routes), half by none. The ceiling is
the same pipeline without the router: its forward output takes the `kube.*` records as
they come from the kubernetes filter. Printed per case: records per fluent-bit CPU-second
(user + system, start-up included), wall time from the start, copies out against expected,
duplicates, and the agent's own loss counters (records its outputs dropped, retries that
failed for good).

`--rate R` writes the records at R per second instead of all up front, for the sustained
test (`--pods 2000 --rate 50000`: 1,000 routes active on one agent). Each JSON line also
gives copies per wall second, the agent's peak RSS and, with `--rate`, the seconds from the
first write to the first copy. A run ends when every copy is in, or after `--stall` seconds
with no copy while the agent used under 5 % of a core (a busy agent can hold copies back for
many seconds: one thread runs its tail input, filters and flushes), or after `--timeout`
seconds.
"""

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
import yaml

NAMESPACES = 10
# Share of a core below which the agent counts as idle (timers and retries only).
IDLE_SHARE = 0.05
CONTAINER = "app"
LOG_DIR = "/var/log/containers"


def container_id(pod_index):
    return f"{pod_index:064x}"


# --- objects ---------------------------------------------------------------------------

def objects(flows):
    docs = [
        {
            "apiVersion": "logging.sluice.dev/v1alpha1",
            "kind": "Logging",
            "metadata": {"name": "bench"},
            "spec": {
                "controlNamespace": "bench-system",
                "tls": {"mode": "Disabled"},
            },
        },
        {
            "apiVersion": "logging.sluice.dev/v1alpha1",
            "kind": "ClusterOutput",
            "metadata": {"name": "discard"},
            "spec": {"nullOutput": {}},
        },
    ]
    for i in range(flows):
        docs.append(
            {
                "apiVersion": "logging.sluice.dev/v1alpha1",
                "kind": "Flow",
                "metadata": {"name": f"f-{i}", "namespace": f"ns-{i % NAMESPACES}"},
                "spec": {
                    "match": [{"select": {"labels": {"app": f"app-{i}"}}}],
                    "globalOutputRefs": ["discard"],
                },
            }
        )
    return docs


def pods(flows, count):
    """(name, namespace, app label, flow index or None), half taken by a distinct flow."""
    out = []
    taken = 0
    for p in range(count):
        if p % 2 == 0 and taken < flows:
            # Spread the taken pods over the flows so many distinct routes are active.
            flow = (taken * max(1, flows // max(1, (count + 1) // 2))) % flows
            taken += 1
            out.append((f"pod-{p}", f"ns-{flow % NAMESPACES}", f"app-{flow}", flow))
        else:
            out.append((f"pod-{p}", f"ns-{p % NAMESPACES}", "nobody", None))
    return out


def render(sluice, work, flows):
    src = os.path.join(work, "objects")
    os.makedirs(src)
    with open(os.path.join(src, "objects.yaml"), "w") as f:
        yaml.safe_dump_all(objects(flows), f)
    out = subprocess.run(
        [sluice, "render", "-f", src], check=True, capture_output=True, text=True
    ).stdout
    secrets = {}
    for doc in yaml.safe_load_all(out):
        if doc and doc.get("kind") == "Secret":
            data = doc.get("data") or {}
            secrets[doc["metadata"]["name"]] = {
                k: base64.b64decode(v).decode() for k, v in data.items()
            }
    return secrets


# --- the agent's configuration, moved to the scratch directory --------------------------

def local_config(secrets, work, port, http_port, ceiling):
    config_secret = secrets["bench-agent-config"]
    config = yaml.safe_load(config_secret["fluent-bit.yaml"])
    shared = os.path.join(work, "shared")
    routes = os.path.join(work, "routes")
    os.makedirs(shared)
    os.makedirs(routes)
    for name, secret in secrets.items():
        if name.startswith("bench-agent-routes"):
            for key, text in secret.items():
                with open(os.path.join(routes, key), "w") as f:
                    f.write(text)
    for key, text in config_secret.items():
        if key.endswith(".lua"):
            text = text.replace("/fluent-bit/routes", routes)
            with open(os.path.join(shared, key), "w") as f:
                f.write(text)

    service = config["service"]
    service["http_listen"] = "127.0.0.1"
    service["http_port"] = str(http_port)
    service["storage.path"] = os.path.join(work, "storage")
    service["log_level"] = "info"
    pipeline = config["pipeline"]
    logs = os.path.join(work, "containers")
    for section in pipeline.get("inputs", []):
        rewrite_section(section, work, shared, routes, logs)
        if section["name"] == "tail":
            section["read_from_head"] = "true"
            section["db"] = os.path.join(work, "containers.db")
    for section in pipeline.get("filters", []):
        rewrite_section(section, work, shared, routes, logs)
    for output in pipeline["outputs"]:
        output["host"] = "127.0.0.1"
        output["port"] = str(port)
        output["tls"] = "off"
        for key in [k for k in output if k.startswith("tls.")]:
            del output[key]
        output.pop("shared_key", None)
        output.pop("self_hostname", None)

    if ceiling:
        strip_router(config)
    path = os.path.join(work, "fluent-bit.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def rewrite_section(section, work, shared, routes, logs):
    for processors in (section.get("processors") or {}).values():
        for processor in processors:
            rewrite_section(processor, work, shared, routes, logs)
    name = section["name"]
    if name == "tail":
        section["path"] = section["path"].replace(LOG_DIR, logs)
        if "exclude_path" in section:
            section["exclude_path"] = section["exclude_path"].replace(LOG_DIR, logs)
        section["tag_regex"] = section["tag_regex"].replace(
            "^" + LOG_DIR.replace("/", "/"), "^" + re.escape(logs).replace("\\/", "/")
        )
    elif name == "kubernetes":
        section["kube_meta_preload_cache_dir"] = os.path.join(work, "kcache")
        section["kube_url"] = "http://127.0.0.1:9"
        section["kube_token_file"] = os.path.join(work, "token")
        section["kube_ca_file"] = os.path.join(work, "token")
    elif name == "lua":
        section["script"] = os.path.join(shared, os.path.basename(section["script"]))


def strip_router(config):
    """The ceiling: the same pipeline with every routing step taken out, every record
    forwarded as the kubernetes filter left it."""
    pipeline = config["pipeline"]
    keep = lambda s: s["name"] == "kubernetes"
    pipeline["filters"] = [s for s in pipeline.get("filters", []) if keep(s)]
    for section in pipeline.get("inputs", []):
        for kind, processors in list((section.get("processors") or {}).items()):
            section["processors"][kind] = [p for p in processors if keep(p)]
    for output in pipeline["outputs"]:
        output["match"] = "*"


# --- input ------------------------------------------------------------------------------

def write_kcache(work, pod_list):
    cache = os.path.join(work, "kcache")
    os.makedirs(cache)
    with open(os.path.join(work, "token"), "w") as f:
        f.write("bench")
    for index, (name, namespace, app, _) in enumerate(pod_list):
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{index}",
                "labels": {"app": app, "pod-template-hash": "5d8f7c9b"},
                "annotations": {},
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": CONTAINER, "image": "registry.example/app:1"}],
            },
            "status": {
                "podIP": "10.0.0.1",
                "containerStatuses": [
                    {
                        "name": CONTAINER,
                        "image": "registry.example/app:1",
                        "imageID": "sha256:abc",
                        "containerID": "containerd://" + container_id(index),
                    }
                ],
            },
        }
        with open(os.path.join(cache, f"{namespace}_{name}.meta"), "w") as f:
            json.dump(doc, f)


def log_path(work, index, pod):
    name, namespace, _, _ = pod
    return os.path.join(
        work, "containers", f"{name}_{namespace}_{CONTAINER}-{container_id(index)}.log"
    )


def line(index, seq):
    return (
        f"2026-12-07T02:25:43.{seq % 1000000000:09d}Z stdout F "
        f"GET /api/v1/items/{seq} HTTP/1.1 200 1432 pod={index} seq={seq}\n"
    )


def write_all(work, pod_list, records):
    os.makedirs(os.path.join(work, "containers"), exist_ok=True)
    handles = [open(log_path(work, i, p), "w") for i, p in enumerate(pod_list)]
    for seq in range(records):
        index = seq % len(pod_list)
        handles[index].write(line(index, seq))
    for h in handles:
        h.close()


def write_at_rate(work, pod_list, records, rate):
    """Appends the records at `rate` per second (run in a process of its own, so the
    receiver's event loop is never starved)."""
    fds = [os.open(log_path(work, i, p), os.O_WRONLY | os.O_APPEND) for i, p in enumerate(pod_list)]
    start = time.monotonic()
    seq = 0
    while seq < records:
        due = min(records, int((time.monotonic() - start) * rate))
        while seq < due:
            index = seq % len(pod_list)
            os.write(fds[index], line(index, seq).encode())
            seq += 1
        time.sleep(0.01)
    for fd in fds:
        os.close(fd)


# --- the forward receiver ----------------------------------------------------------------

class Receiver:
    def __init__(self):
        self.by_tag = {}
        self.duplicates = 0
        self.total = 0
        self.last = time.monotonic()
        self.first = None
        self.busy = 0.0
        self.connections = 0
        self.messages = 0
        self.acks = 0

    def record(self, tag, body):
        log = body.get("log") or body.get(b"log") or ""
        if isinstance(log, bytes):
            log = log.decode(errors="replace")
        m = re.search(r"seq=(\d+)", log)
        seqs = self.by_tag.setdefault(tag, set())
        seq = int(m.group(1)) if m else -1
        if seq in seqs:
            self.duplicates += 1
        seqs.add(seq)
        self.total += 1
        self.last = time.monotonic()
        if self.first is None:
            self.first = self.last

    def entries(self, tag, entries):
        if isinstance(entries, (bytes, bytearray)):
            for item in unpack_stream(entries):
                self.record(tag, item[1])
        else:
            for item in entries:
                self.record(tag, item[1])

    async def serve(self, reader, writer):
        try:
            await self.serve_connection(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception as error:  # a bug here would leave the agent waiting for an ack
            print(f"receiver: {error!r}", file=sys.stderr)
            raise

    async def serve_connection(self, reader, writer):
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=1 << 30)
        self.connections += 1
        while True:
            data = await reader.read(1 << 20)
            if not data:
                break
            unpacker.feed(data)
            for message in unpacker:
                tag = message[0]
                self.messages += 1
                option = None
                if isinstance(message[1], (list, bytes, bytearray)):
                    self.entries(tag, message[1])
                    option = message[2] if len(message) > 2 else None
                else:
                    self.record(tag, message[2])
                    option = message[3] if len(message) > 3 else None
                if option and option.get("chunk"):
                    writer.write(msgpack.packb({"ack": option["chunk"]}))
                    self.acks += 1
                    await writer.drain()
        writer.close()


def unpack_stream(data):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=1 << 30)
    unpacker.feed(data)
    return unpacker


# --- measuring ---------------------------------------------------------------------------

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    for row in open(f"/proc/{pid}/status"):
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(http_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/metrics", timeout=5) as r:
            return json.load(r)
    except OSError:
        return {}


def loss_counters(m):
    """What the agent's own counters say was lost: records outputs dropped or gave up on."""
    lost = 0
    for name, output in (m.get("output") or {}).items():
        lost += output.get("dropped_records", 0) + output.get("retries_failed", 0)
    return lost


async def run_case(args, flows, ceiling, pod_count):
    work = tempfile.mkdtemp(prefix=f"agent-bench-{flows}-")
    try:
        secrets = render(args.sluice, work, flows)
        pod_list = pods(flows, pod_count)
        write_kcache(work, pod_list)
        receiver = Receiver()
        server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        http_port = free_port()
        config = local_config(secrets, work, port, http_port, ceiling)
        # Every file exists before the agent starts, so the tail input's first scan finds it.
        write_all(work, pod_list, 0 if args.rate else args.records)
        log = open(os.path.join(work, "fluent-bit.log"), "w")
        # CPU and wall time count from the start: records written up front are read from
        # the first second, before the HTTP API answers (a read callback can hold it back).
        t0 = time.monotonic()
        proc = subprocess.Popen([args.fluent_bit, "-c", config], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                if metrics(http_port):
                    break
                await asyncio.sleep(0.1)
            writes_began = time.monotonic()
            if args.rate:
                writer = multiprocessing.Process(target=write_at_rate, args=(work, pod_list, args.records, args.rate))
                writer.start()
            expected_total = expected_copies(pod_list, args.records, ceiling)
            receiver.last = time.monotonic()
            # A run is stalled when no copy arrived for `--stall` seconds while the agent sat
            # idle: fluent-bit runs the tail input, the filters and the flushes on one thread,
            # so a long read can hold every copy back for many seconds while it works.
            busy_mark = (time.monotonic(), cpu_seconds(proc.pid))
            tick = 0
            while receiver.total < expected_total:
                await asyncio.sleep(0.2)
                tick += 1
                now = time.monotonic()
                if now - busy_mark[0] >= args.stall:
                    cpu_now = cpu_seconds(proc.pid)
                    if cpu_now - busy_mark[1] > IDLE_SHARE * (now - busy_mark[0]):
                        receiver.busy = now
                    busy_mark = (now, cpu_now)
                if args.verbose and tick % 10 == 0:
                    print(f"  {time.monotonic() - t0:6.1f}s copies {receiver.total:,} messages {receiver.messages:,} "
                          f"acks {receiver.acks:,} connections {receiver.connections:,} cpu {cpu_seconds(proc.pid):.1f}s", file=sys.stderr)
                    if args.verbose and tick % 50 == 0:
                        try:
                            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/storage", timeout=5) as r:
                                print("  storage", r.read()[:600], file=sys.stderr)
                            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v2/metrics", timeout=5) as r:
                                text = r.read().decode()
                                print("\n".join("  " + l for l in text.splitlines() if "task" in l or "chunk" in l or "retr" in l)[:3000], file=sys.stderr)
                        except OSError as e:
                            print("  metrics", e, file=sys.stderr)
                quiet = now - max(receiver.last, receiver.busy)
                if quiet > args.stall and (not args.rate or not writer.is_alive()):
                    break
                if now - t0 > args.timeout:
                    break
                if proc.poll() is not None:
                    break
            if args.rate:
                writer.join()
            wall = receiver.last - t0
            cpu = cpu_seconds(proc.pid)
            m = metrics(http_port)
            with open(os.path.join(work, "metrics.json"), "w") as f:
                json.dump(m, f, indent=1)
            hwm = rss_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            server.close()
        wrong = check(receiver, pod_list, args.records, ceiling)
        text = open(os.path.join(work, "fluent-bit.log")).read()
        return {
            "flows": flows,
            "case": "ceiling" if ceiling else "router",
            "records": args.records,
            "records_per_cpu_s": round(args.records / cpu) if cpu else None,
            "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2),
            "first_copy_s": round(receiver.first - writes_began, 2) if receiver.first and args.rate else None,
            "copies_per_s": round(receiver.total / wall) if wall > 0 else None,
            "copies": receiver.total,
            "expected": expected_total,
            "duplicates": receiver.duplicates,
            "misrouted": wrong,
            "loss_counters": loss_counters(m),
            "paused_lines": text.count("paused"),
            "errors": text.count("[error]"),
            "rss_hwm_mb": round(hwm),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work, file=sys.stderr)


def expected_copies(pod_list, records, ceiling):
    if ceiling:
        return records
    taken = sum(1 for seq in range(records) if pod_list[seq % len(pod_list)][3] is not None)
    return taken


def check(receiver, pod_list, records, ceiling):
    """Copies that reached a tag other than their flow's; missing ones show in the total."""
    if ceiling:
        return 0
    wrong = 0
    route_of = {}
    for tag, seqs in receiver.by_tag.items():
        for seq in seqs:
            route_of.setdefault(seq, []).append(tag)
    flow_tags = {}
    for tag in receiver.by_tag:
        flow_tags.setdefault(tag, None)
    for seq, tags in route_of.items():
        pod = pod_list[seq % len(pod_list)] if seq >= 0 else None
        if pod is None or pod[3] is None or len(tags) != 1:
            wrong += 1
    # Every record of one pod must reach the same tag.
    pod_tags = {}
    for seq, tags in route_of.items():
        if seq >= 0:
            pod_tags.setdefault(seq % len(pod_list), set()).update(tags)
    wrong += sum(1 for tags in pod_tags.values() if len(tags) != 1)
    return wrong


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fluent-bit", required=True)
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--flows", default="10,100,1000,10000")
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stall", type=float, default=15.0,
                        help="seconds without a record, the agent idle, that end a run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds that end a run in any case")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    rows = []
    for flows in [int(n) for n in args.flows.split(",")]:
        for _ in range(args.runs):
            ceiling = None if args.no_ceiling else await run_case(args, flows, True, args.pods)
            router = await run_case(args, flows, False, args.pods)
            if ceiling:
                router["ceiling_per_cpu_s"] = ceiling["records_per_cpu_s"]
                router["ratio"] = round(router["records_per_cpu_s"] / ceiling["records_per_cpu_s"], 2)
            print(json.dumps(router), flush=True)
            rows.append(router)
    print()
    print("| flows | records per CPU-s | ceiling | ratio | copies out / expected | duplicates | misrouted | loss counters |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['flows']:,} | {r['records_per_cpu_s']:,} | {r.get('ceiling_per_cpu_s', '-')} | "
            f"{r.get('ratio', '-')} | {r['copies']:,} / {r['expected']:,} | {r['duplicates']} | "
            f"{r['misrouted']} | {r['loss_counters']} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
