"""One side of the warm benchmark in its own process (the parent pins it to 1 or 2 CPUs):

    python -m benchmarks.warm_worker ours|naive WORKDIR [CODE]
    python -m benchmarks.warm_worker matmul WORKDIR REPS

ours   the real Lambda handler, app(event, context), with API Gateway events carrying each
       input of REQUESTS as base64 (a PNG, a JPEG, DICOMs in JPEG Baseline and JPEG 2000 lossy
       and lossless, and a PNG with ?heatmap); and the bare forward of the served backend.
       CODE: the project tree whose app and chalicelib to serve (default: this one); the
       "before" side of `--before REF` is another commit's tree, checked out by the parent,
       and its own model store (WORKDIR/efs-before/)
naive  what the seed article and the AWS samples do: torch and torchvision imported at start,
       torchvision's DenseNet-121 (same weights) in eager fp32, PIL + torchvision transforms,
       torch.load of a state_dict
matmul the sustained fp32 rate of this CPU (a large matmul), for the physical floor

ours and naive start cold (import, load, first answer: timed from the interpreter's start),
report that, then serve the parent: each line "N" on stdin runs N warm iterations and answers
their latencies; "0" answers the outputs and peak RSS and exits. The parent alternates the two
sides in short rounds, so that a slow stretch of this shared machine hits both alike.
Answers are printed as one line starting with MARK (the app's own log lines go to stdout too).
"""
import json
import os
import resource
import sys
import time
from typing import Any, Callable, Dict, List

from lambda_sim.events import proxy_event

STARTED = time.perf_counter()
MARK = "@@benchmark "
IMAGES = {"png": "nih_00000001_000_cardiomegaly.png", "jpeg": "chest.jpg",
          "dicom_jpeg": "nih_00000001_000_wrapped_jpegbaseline_8bit_mono1_derived.dcm",
          "j2k_lossy": "nema_RG1_chest_cr_pa_j2k_lossy_15bit_mono1.dcm",
          "j2k_lossless": "rg1_j2k_lossless.dcm"}
TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom_jpeg": "application/dicom",
         "j2k_lossy": "application/dicom", "j2k_lossless": "application/dicom"}
# request name -> (image, query string): every image plainly, and the PNG with a heatmap
REQUESTS = {**{kind: (kind, None) for kind in IMAGES},
            "png_heatmap": ("png", {"heatmap": "top"})}


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def import_first_request(app: Any) -> str:
    """Imports what a first PNG or JPEG classification runs on (the base64 decoder, Pillow's core
    and the plugins Image.open loads first, the decoders, numpy and the model's backend) and
    names the backend: the "import" phase of a cold start, so that the first answer hides no
    import. A DICOM upload also imports pydicom, on its first use."""
    from PIL import Image, ImageOps  # noqa: F401

    app.get_service()  # the request pipeline: the decoders, numpy, libdeflate
    import chalicelib.reports.respond  # noqa: F401  (Accept negotiation; the JSON answer)
    import chalicelib.web.params  # noqa: F401  (?force)
    import chalicelib.web.uploads  # noqa: F401  (the routes' base64 decoder, pybase64)
    from chalicelib.inference.classifier import choose_backend
    from chalicelib.inference.store import read_manifest
    from chalicelib.inference.torch_import import import_torch
    Image.preinit()
    settings = app.get_settings()
    backend = choose_backend(read_manifest(settings.model_path), settings.backend)
    if backend == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import_torch(settings.packages_path)
    return backend


def png_model_input(classifier, work: str):
    """The benchmark PNG through our decoder and the model's preprocessing: the one input
    every bare forward in the benchmarks is timed on."""
    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    with open(os.path.join(work, IMAGES["png"]), "rb") as file:
        pixels = decode(file.read(), TYPES["png"], Limits(40_000_000, 32)).pixels
    return classifier.preprocess(pixels)


class Ours:
    def __init__(self, work: str, code: str = "") -> None:
        if code:  # another commit's tree: its app and chalicelib, its own model store
            sys.path.insert(0, code)
            os.chdir(code)
        from chalicelib.settings import EFS_ROOT
        os.environ[EFS_ROOT] = os.path.join(work, "efs-before" if code else "efs")
        import app  # the handler module, as Lambda's init phase imports it
        imported_app = time.perf_counter()
        import_first_request(app)  # what the first request imports: Pillow, onnxruntime
        imported = time.perf_counter()
        self.classifier = app.get_model().get()
        loaded = time.perf_counter()
        bodies = {kind: open(os.path.join(work, name), "rb").read()
                  for kind, name in IMAGES.items()}
        self.events = {name: proxy_event("POST", "/xray", bodies[kind], TYPES[kind], query)
                       for name, (kind, query) in REQUESTS.items()}
        first = app.app(self.events["png"], None)
        assert first["statusCode"] == 200, first["body"]
        answered = time.perf_counter()
        # the container's first heatmap: before issue 16 it imported torch here
        heatmap = app.app(self.events["png_heatmap"], None)
        assert heatmap["statusCode"] == 200, heatmap["body"]
        self.cold = {"import_ms": round((imported - STARTED) * 1000, 1),
                     "import_app_ms": round((imported_app - STARTED) * 1000, 1),
                     "load_ms": round((loaded - imported) * 1000, 1),
                     "first_inference_ms": round((answered - loaded) * 1000, 2),
                     "first_heatmap_ms": ms_since(answered)}
        self.facts = {"torch_imported_by_first_heatmap": "torch" in sys.modules}
        for name, event in self.events.items():  # every answer must be a success
            response = app.app(event, None)
            assert response["statusCode"] == 200, (name, response["body"][:500])
        self.backend = self.classifier.backend
        self.handler = app.app
        self.batch = png_model_input(self.classifier, work)
        if not code:
            import numpy
            numpy.save(os.path.join(work, "batch.npy"), self.batch)  # naive's forward reads it

    def iteration(self) -> Dict[str, float]:
        times = {}
        for kind, request in self.events.items():
            start = time.perf_counter()
            self.handler(request, None)
            times[kind] = ms_since(start)
        start = time.perf_counter()
        self.classifier.inference(self.batch)
        times["forward"] = ms_since(start)
        return times

    def outputs(self) -> List[float]:
        return self.classifier.inference(self.batch)


class Naive:
    backend = "torch eager fp32 (torchvision)"

    def __init__(self, work: str) -> None:
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
        self.cold = {"import_ms": round((imported - STARTED) * 1000, 1),
                     "load_ms": round((loaded - imported) * 1000, 1),
                     "first_inference_ms": ms_since(loaded)}
        import numpy
        self.handle, self.model, self.torch = handle, model, torch
        # what ours' cold start wrote (the parent starts ours first): one input for both forwards
        self.batch = torch.from_numpy(numpy.load(os.path.join(work, "batch.npy")))

    def iteration(self) -> Dict[str, float]:
        start = time.perf_counter()
        self.handle()
        times = {"png": ms_since(start)}
        start = time.perf_counter()
        self.outputs()
        times["forward"] = ms_since(start)
        return times

    def outputs(self) -> List[float]:
        with self.torch.no_grad():
            return self.torch.sigmoid(self.model(self.batch))[0].tolist()


def answer(value: object) -> None:
    print(MARK + json.dumps(value), flush=True)


def serve(side: Callable[..., object], work: str, *args: str) -> None:
    started = side(work, *args)
    answer({"cold": started.cold, "backend": started.backend,
            "facts": getattr(started, "facts", {})})
    for line in sys.stdin:
        count = int(line)
        if count == 0:
            break
        answer([started.iteration() for _ in range(count)])
    answer({"outputs": started.outputs(), "peak_rss_mb": peak_rss_mb()})


def matmul(reps: int) -> dict:
    """The best rate of a 2,048-square fp32 matmul over `reps` tries, by torch (MKL) and by
    numpy (OpenBLAS), each with one thread per CPU: whichever library is faster here."""
    import numpy
    import torch
    torch.set_num_threads(cpus())
    size = 2048
    a, b = torch.randn(size, size), torch.randn(size, size)
    rates = {}
    for library, multiply in (("torch", lambda: torch.mm(a, b)),
                              ("numpy", lambda: numpy.matmul(a.numpy(), b.numpy()))):
        multiply()
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            multiply()
            best = min(best, time.perf_counter() - start)
        rates[library] = round(2 * size ** 3 / best / 1e9, 1)
    return {"gflops": max(rates.values()), "by_library": rates}


if __name__ == "__main__":
    mode, workdir = sys.argv[1], sys.argv[2]
    if mode == "matmul":
        answer(matmul(int(sys.argv[3])))
    else:
        serve({"ours": Ours, "naive": Naive}[mode], workdir, *sys.argv[3:])
