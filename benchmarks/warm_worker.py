"""One measurement run in a fresh process (the parent pins it to 1 or 2 CPUs):

    python -m benchmarks.warm_worker ours|naive|matmul WORKDIR REPS

ours   the real Lambda handler, app(event, context), with API Gateway events carrying a PNG,
       a JPEG and a DICOM as base64; and the bare forward of the served backend
naive  what the seed article and the AWS samples do: torch and torchvision imported at start,
       torchvision's DenseNet-121 (same weights) in eager fp32, PIL + torchvision transforms,
       torch.load of a state_dict
matmul the sustained fp32 rate of this CPU (a large matmul), for the physical floor

Prints one JSON object: phases of the cold start, warm latencies (ms), peak RSS, outputs.
"""
import base64
import json
import os
import resource
import statistics
import sys
import time

STARTED = time.perf_counter()
IMAGES = {"png": "nih_00000001_000_cardiomegaly.png", "jpeg": "chest.jpg",
          "dicom": "nih_00000001_000_wrapped_jpegbaseline_8bit_mono1_derived.dcm"}
TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def timed(function, reps: int) -> dict:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return summarise(samples)


def summarise(samples: list) -> dict:
    samples = sorted(samples)
    return {"p50": round(statistics.median(samples), 2),
            "p95": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def event(body: bytes, content_type: str) -> dict:
    path = "/xray"
    return {"resource": path, "path": path, "httpMethod": "POST",
            "headers": {"Content-Type": content_type}, "multiValueHeaders": {},
            "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": path, "httpMethod": "POST", "stage": "api"},
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def ours(work: str, reps: int) -> dict:
    os.environ["XRAY_EFS_ROOT"] = os.path.join(work, "efs")
    import app  # noqa: the handler module, as Lambda's init phase imports it
    imported_app = time.perf_counter()
    model = app.get_model()
    model.import_runtime()  # what the first request would import: torch or onnxruntime
    imported = time.perf_counter()
    classifier = model.get()
    loaded = time.perf_counter()
    bodies = {kind: open(os.path.join(work, name), "rb").read() for kind, name in IMAGES.items()}
    events = {kind: event(body, TYPES[kind]) for kind, body in bodies.items()}
    first = app.app(events["png"], None)
    answered = time.perf_counter()
    assert first["statusCode"] == 200, first["body"]
    result = {"cold": {"import_ms": round((imported - STARTED) * 1000, 1),
                       "import_app_ms": round((imported_app - STARTED) * 1000, 1),
                       "load_ms": round((loaded - imported) * 1000, 1),
                       "first_inference_ms": round((answered - loaded) * 1000, 1)},
              "backend": classifier.backend, "handler": {}, "probabilities": {}}
    from chalicelib.decoding import Limits, decode
    batch = classifier.preprocess(decode(bodies["png"], "image/png", Limits(40_000_000, 32))
                                  .pixels)
    # Interleaved, so that a slower stretch of this shared machine hits every figure alike
    # and the handler/forward ratios stay honest.
    series = {kind: [] for kind in events}
    series["forward"] = []
    for _ in range(reps + 2):
        for kind, request in events.items():
            series[kind].append(timed(lambda: app.app(request, None), 1)["p50"])
        series["forward"].append(timed(lambda: classifier.inference(batch), 1)["p50"])
    summary = {name: summarise(values[2:]) for name, values in series.items()}  # 2 warm-ups
    result["forward"] = summary.pop("forward")
    result["handler"] = summary
    result["probabilities"] = classifier.inference(batch)
    import numpy
    numpy.save(os.path.join(work, "batch.npy"), batch)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def naive(work: str, reps: int) -> dict:
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms
    imported = time.perf_counter()
    torch.set_num_threads(cpus())
    model = torchvision.models.densenet121(num_classes=18)
    model.features.conv0 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model.load_state_dict(torch.load(os.path.join(work, "naive_state_dict.pt"),
                                     weights_only=True))
    model.eval()
    loaded = time.perf_counter()
    pipeline = transforms.Compose([transforms.Grayscale(), transforms.Resize(224),
                                   transforms.CenterCrop(224), transforms.ToTensor(),
                                   transforms.Lambda(lambda x: x * 2048 - 1024)])
    path = os.path.join(work, IMAGES["png"])

    def handle() -> str:
        with torch.no_grad():
            probabilities = torch.sigmoid(model(pipeline(Image.open(path))[None]))[0]
        return json.dumps({"findings": probabilities.tolist()})

    handle()
    answered = time.perf_counter()
    import numpy
    batch = torch.from_numpy(numpy.load(os.path.join(work, "batch.npy")))

    def forward():
        with torch.no_grad():
            return torch.sigmoid(model(batch))[0].tolist()

    handled, forwarded = [], []
    for _ in range(reps + 2):  # interleaved, as in ours()
        handled.append(timed(handle, 1)["p50"])
        forwarded.append(timed(forward, 1)["p50"])
    return {"cold": {"import_ms": round((imported - STARTED) * 1000, 1),
                     "load_ms": round((loaded - imported) * 1000, 1),
                     "first_inference_ms": round((answered - loaded) * 1000, 1)},
            "backend": "torch eager fp32 (torchvision)",
            "handler": {"png": summarise(handled[2:])}, "forward": summarise(forwarded[2:]),
            "probabilities": forward(), "peak_rss_mb": peak_rss_mb()}


def matmul(work: str, reps: int) -> dict:
    import torch
    torch.set_num_threads(cpus())
    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b), 1)["p50"] for _ in range(max(reps // 2, 5)))
    return {"gflops": round(2 * size ** 3 / (best / 1000) / 1e9, 1)}


if __name__ == "__main__":
    mode, workdir, repetitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"ours": ours, "naive": naive, "matmul": matmul}[mode](workdir, repetitions)))
