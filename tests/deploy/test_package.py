"""The artifacts a user deploys, inspected as built: the Lambda zip Chalice makes and the
CloudFormation template from `python -m deploy.package` (chalice package + our merge template),
linted as SAM and again after translation to plain CloudFormation. The zip is checked for each
lambda_architecture: x86_64 (the committed stages) and arm64 (stage prod set to it)."""
import copy
import json
import re
import zipfile
from pathlib import Path

import pytest

from deploy.vendor import MACHINES
from tests.support.packaging import (
    LAMBDA_GLIBC,
    USER_VALUES,
    built_for,
    built_once,
    cfn_lint,
    elf_machine,
    lambda_compatible,
    translate,
    wheel_tags,
)

pytestmark = pytest.mark.build

MB = 1024 * 1024
HEAVY = ("torch", "torchvision", "torchgen", "functorch", "nvidia", "triton", "torchxrayvision")
NOT_FOR_LAMBDA = ("deploy", "tests", "vendor_efs", "lambda_sim", "benchmarks", "scripts",
                  "efs-local", ".chalice", "docs", "build", "vendor")
# onnxruntime's declared (or formerly declared) dependencies that classification never imports,
# and theirs: none is in either zip
UNUSED = ("sympy", "mpmath", "coloredlogs", "humanfriendly", "protobuf", "flatbuffers")
UNUSED_TOPS = ("sympy", "mpmath", "coloredlogs", "humanfriendly", "google", "flatbuffers")


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory)


@pytest.fixture(scope="module", params=list(MACHINES))
def architecture(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def machine(architecture) -> str:
    return MACHINES[architecture]


@pytest.fixture(scope="module")
def zip_dir(tmp_path_factory, architecture) -> Path:
    """The package folder of stage prod built for `architecture`."""
    return built_for(tmp_path_factory, architecture)


@pytest.fixture(scope="module")
def archive(zip_dir):
    with zipfile.ZipFile(zip_dir / "deployment.zip") as opened:
        yield opened


def test_the_zip_holds_no_torch_and_no_deploy_tooling(archive):
    top = {name.split("/")[0] for name in archive.namelist()}
    assert not {t for t in top if t.split("-")[0].split(".")[0].lower() in HEAVY}, top
    assert not top & set(NOT_FOR_LAMBDA), top
    assert {"app.py", "chalicelib"} <= top


def test_the_zip_holds_every_chalicelib_module(zip_dir, archive):
    project = zip_dir.parent / "project"  # the checkout that was packaged
    ours = {str(p.relative_to(project)) for p in (project / "chalicelib").rglob("*.py")}
    assert ours <= set(archive.namelist())


def test_the_zip_fits_lambdas_size_limits(zip_dir, archive, architecture):
    zipped = (zip_dir / "deployment.zip").stat().st_size
    unzipped = sum(info.file_size for info in archive.infolist())
    print(f"deployment.zip ({architecture}): {zipped / MB:.1f} MB zipped, "
          f"{unzipped / MB:.1f} MB unzipped")
    assert zipped < 50 * MB and unzipped < 250 * MB


def test_every_native_library_comes_from_a_wheel_lambda_can_run(archive, machine):
    """Chalice silently builds a package from source on this host when it finds no wheel it
    accepts (the Pillow 13 trap); such a build is tagged linux_x86_64 and links this host's
    glibc. Every .so must belong to a dist-info whose wheel tags fit Lambda's runtime on the
    stage's architecture (Chalice picks requirements.txt's wheels for it, deploy/vendor.py
    vendor/'s)."""
    tags = wheel_tags(archive)
    owner = {}
    for dist_info in tags:
        for line in archive.read(f"{dist_info}/RECORD").decode().splitlines():
            owner[line.split(",")[0]] = dist_info
    native = [n for n in archive.namelist() if re.search(r"\.so(\.|$)", n)]
    assert native, "numpy and Pillow ship native code: the zip should hold some"
    orphans = [n for n in native if n not in owner]
    assert not orphans, f"native files no wheel declares: {orphans[:5]}"
    for dist_info in {owner[n] for n in native}:
        assert any(lambda_compatible(tag, machine) for tag in tags[dist_info]), (
            dist_info, tags[dist_info])
    for dist_info, its_tags in tags.items():
        assert not any(re.search(r"(^|-)linux_", tag) for tag in its_tags), (
            f"{dist_info} was built on this host: {its_tags}")


def test_the_zip_holds_the_vendored_packages_without_the_c_api_and_the_left_out_dependencies(
        archive, machine):
    """onnxruntime and highdicom come from vendor/ (deploy/vendor.py): their dist-info is there,
    libonnxruntime.so is not, nor flatbuffers, protobuf (google/) or pyjpegls (jpeg_ls, _CharLS);
    packaging, which highdicom imports, comes from requirements.txt."""
    from deploy.vendor import LEFT_OUT
    names = archive.namelist()
    dists = {d.split("-")[0].lower() for d in wheel_tags(archive)}
    assert {"onnxruntime", "highdicom", "packaging"} <= dists
    assert not dists & set(LEFT_OUT), dists & set(LEFT_OUT)
    assert set(LEFT_OUT) == {"flatbuffers", "protobuf", "pyjpegls"}  # the tops checked below
    top = {name.split("/")[0] for name in names}
    assert not top & {"google", "flatbuffers", "jpeg_ls"}, top
    assert not [t for t in top if t.startswith("_CharLS")], top
    assert not [n for n in names if re.search(r"(^|/)libonnxruntime\.so", n)]
    assert [n for n in names if re.fullmatch(
        rf"onnxruntime/capi/onnxruntime_pybind11_state\.cpython-3\d+-{machine}-linux-gnu\.so", n)]
    assert "onnxruntime/capi/libonnxruntime_providers_shared.so" in names  # it is loaded
    record = archive.read("onnxruntime-1.31.1.dist-info/RECORD").decode()
    assert "libonnxruntime.so" not in record


def test_onnxruntimes_unused_dependencies_are_in_neither_zip(archive):
    """Not as distributions (dist-info) nor as importable top-level packages or modules."""
    dists = {d.split("-")[0].lower() for d in wheel_tags(archive)}
    assert not dists & set(UNUSED), dists & set(UNUSED)
    tops = {name.split("/")[0].removesuffix(".py") for name in archive.namelist()}
    assert not tops & set(UNUSED_TOPS), tops & set(UNUSED_TOPS)
    assert {"onnxruntime", "numpy"} <= tops  # the names read are the zip's real tops


def test_the_pinned_numpy_and_pillow_are_manylinux_wheels(archive, machine):
    tags = wheel_tags(archive)
    for name in ("numpy", "pillow"):
        (dist_info,) = [d for d in tags if d.lower().startswith(name + "-")]
        assert any(lambda_compatible(t, machine) and "manylinux" in t for t in tags[dist_info])


def test_every_function_of_the_template_runs_on_the_stages_architecture(zip_dir, architecture):
    resources = sam_template(zip_dir)["Resources"]
    functions = {k: v["Properties"] for k, v in resources.items()
                 if v["Type"] == "AWS::Serverless::Function"}
    assert len(functions) == 5
    assert {k: p.get("Architectures") for k, p in functions.items()} == {
        k: [architecture] for k in functions}


# --- the CloudFormation path ---------------------------------------------------------------

def sam_template(package_dir: Path) -> dict:
    return json.loads((package_dir / "sam.json").read_text())


def role_statements(resources: dict, role: str) -> list:
    return [s for policy in resources[role]["Properties"]["Policies"]
            for s in policy["PolicyDocument"]["Statement"]]


def efs_statements(statements: list) -> list:
    return [s for s in statements if "elasticfilesystem" in json.dumps(s["Action"])]


# Chalice's logical ids for api_handler, efs_loader, job_worker: the functions that mount EFS
FUNCTIONS = ("APIHandler", "EfsLoader", "JobWorker")


def test_the_template_mounts_efs_inside_the_vpc_with_a_read_only_mount_permission(package_dir):
    resources = sam_template(package_dir)["Resources"]
    function = resources["APIHandler"]["Properties"]
    arn = USER_VALUES["efs_access_point_arn"]
    assert function["Handler"] == "app.app"
    assert function["FileSystemConfigs"] == [{"Arn": arn, "LocalMountPath": "/mnt/xray"}]
    assert function["VpcConfig"] == {"SubnetIds": USER_VALUES["subnet_ids"],
                                     "SecurityGroupIds": USER_VALUES["security_group_ids"]}
    assert function["Timeout"] <= 28 and function["MemorySize"] >= 2048
    assert function["ReservedConcurrentExecutions"] >= 2  # not the loader's 1
    assert function["Environment"]["Variables"]["XRAY_EFS_ROOT"] == "/mnt/xray"
    assert function["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    statements = role_statements(resources, "ApiHandlerRole")
    assert efs_statements(statements) == [{
        "Sid": "EfsReadOnlyMountThroughAccessPoint", "Effect": "Allow",
        "Action": "elasticfilesystem:ClientMount",
        "Resource": "arn:aws:elasticfilesystem:eu-west-1:123456789012:file-system/*",
        "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": arn}}}]
    assert USER_VALUES["efs_upload_bucket"] not in json.dumps(statements)  # jobs bucket only
    api = resources["RestAPI"]["Properties"]
    assert api["EndpointConfiguration"] == "REGIONAL"
    assert "application/dicom" in api["DefinitionBody"]["x-amazon-apigateway-binary-media-types"]


def test_the_template_mounts_efs_on_the_loader_with_its_own_role_and_size(package_dir):
    resources = sam_template(package_dir)["Resources"]
    loader = resources["EfsLoader"]["Properties"]
    arn = USER_VALUES["efs_access_point_arn"]
    assert resources["EfsLoader"]["Type"] == "AWS::Serverless::Function"
    assert loader["Handler"] == "app.efs_loader"
    assert loader["FileSystemConfigs"] == [{"Arn": arn, "LocalMountPath": "/mnt/xray"}]
    assert loader["VpcConfig"] == {"SubnetIds": USER_VALUES["subnet_ids"],
                                   "SecurityGroupIds": USER_VALUES["security_group_ids"]}
    assert (loader["Timeout"], loader["MemorySize"], loader["ReservedConcurrentExecutions"]) == (
        900, 2048, 1)
    assert loader["Environment"]["Variables"]["XRAY_EFS_ROOT"] == "/mnt/xray"
    assert loader["Role"] == {"Fn::GetAtt": ["EfsLoaderRole", "Arn"]}
    statements = role_statements(resources, "EfsLoaderRole")
    assert [s["Sid"] for s in statements] == ["Logs", "VpcNetworkInterfaces",
                                              "EfsReadWriteMountThroughAccessPoint",
                                              "ReadUploadedArchives"]
    assert efs_statements(statements) == [{
        "Sid": "EfsReadWriteMountThroughAccessPoint", "Effect": "Allow",
        "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
        "Resource": "arn:aws:elasticfilesystem:eu-west-1:123456789012:file-system/*",
        "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": arn}}}]
    assert statements[-1] == {
        "Sid": "ReadUploadedArchives", "Effect": "Allow", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{USER_VALUES['efs_upload_bucket']}/efs-upload/*"}


def test_the_merge_template_covers_the_efs_functions_the_bucket_the_gateway_responses_only(
        package_dir):
    merge = json.loads((package_dir / "efs-merge-template.json").read_text())
    # prod: iam, no key
    assert sorted(merge["Resources"]) == sorted(FUNCTIONS + ("RestAPI", "XrayJobsBucket"))
    for name in FUNCTIONS:
        assert sorted(merge["Resources"][name]["Properties"]) == ["FileSystemConfigs",
                                                                  "VpcConfig"]
    assert list(merge["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]) == [
        "x-amazon-apigateway-gateway-responses"]
    types = {k: v["Type"] for k, v in sam_template(package_dir)["Resources"].items()}
    assert sum(t == "AWS::Serverless::Function" for t in types.values()) == 5
    assert types["XrayJobsBucket"] == "AWS::S3::Bucket"


def test_the_sam_template_passes_cfn_lint(package_dir):
    linted = cfn_lint(package_dir / "sam.json")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_translated_template_passes_cfn_lint(package_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the translator fills AWS::Region
    plain = translate(sam_template(package_dir))
    for name in FUNCTIONS:
        function = plain["Resources"][name]
        assert function["Type"] == "AWS::Lambda::Function"
        assert function["Properties"]["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/xray"
        assert "VpcConfig" in function["Properties"]
    assert plain["Resources"]["EfsLoader"]["Properties"]["Timeout"] == 900
    (tmp_path / "cfn.json").write_text(json.dumps(plain))
    linted = cfn_lint(tmp_path / "cfn.json")
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_mount_path_outside_mnt_is_caught_by_lint_after_translation(package_dir, tmp_path,
                                                                       monkeypatch, name):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    broken = sam_template(package_dir)
    broken["Resources"][name]["Properties"]["FileSystemConfigs"][0][
        "LocalMountPath"] = "/efs/xray"
    (tmp_path / "cfn.json").write_text(json.dumps(translate(broken)))
    linted = cfn_lint(tmp_path / "cfn.json")
    assert linted.returncode != 0
    assert "E3031" in linted.stdout and "/efs/xray" in linted.stdout, linted.stdout


def test_every_native_library_asks_only_for_the_runtimes_glibc(archive, machine, tmp_path):
    """What the dynamic loader checks on Lambda: every ELF file is code for the stage's machine,
    its GLIBC_x.y symbol versions, and every wheel's declared tags, are within Amazon Linux
    2023's glibc."""
    from vendor_efs.runtime.glibc import check_tree
    machines = {}
    for info in archive.infolist():
        with archive.open(info) as member:
            found = elf_machine(member.read(20))
        if found:
            machines[info.filename] = found
    assert len(machines) > 10
    assert not {n: m for n, m in machines.items() if m != machine}, machine
    archive.extractall(tmp_path / "task")
    report = check_tree(tmp_path / "task", LAMBDA_GLIBC)
    assert report.elf_files > 10 and report.ok, report.offenders[:10]
    assert report.elf_max is not None and report.elf_max > (2, 17)  # the check read real files


@pytest.mark.parametrize("tag, fits", [
    ("cp313-cp313-manylinux2014_x86_64", True), ("cp310-abi3-manylinux_2_17_x86_64", True),
    ("py3-none-any", True), ("cp313-cp313-manylinux_2_28_x86_64", True),
    ("cp313-cp313-manylinux_2_34_x86_64", True),
    ("cp313-cp313-manylinux_2_35_x86_64", False),  # above Amazon Linux 2023's glibc 2.34
    ("cp313-cp313-linux_x86_64", False),  # built on this host
    ("cp311-cp311-manylinux2014_x86_64", False), ("cp313-cp313-manylinux2014_aarch64", False),
])
def test_the_wheel_tag_rule_tells_lambda_ready_from_host_built(tag, fits):
    assert lambda_compatible(tag) is fits


@pytest.mark.parametrize("tag, fits", [
    ("cp313-cp313-manylinux2014_aarch64", True), ("cp313-cp313-manylinux_2_28_aarch64", True),
    ("cp313-cp313-manylinux_2_34_aarch64", True), ("py3-none-any", True),
    ("cp313-cp313-manylinux_2_35_aarch64", False), ("cp313-cp313-linux_aarch64", False),
    ("cp313-cp313-manylinux_2_28_x86_64", False), ("cp313-cp313-macosx_11_0_arm64", False),
])
def test_the_wheel_tag_rule_for_arm64_takes_aarch64_manylinux_only(tag, fits):
    assert lambda_compatible(tag, "aarch64") is fits


def test_a_merge_into_a_logical_id_chalice_did_not_make_is_refused(package_dir, tmp_path):
    from deploy.errors import DeployError
    from deploy.package import check_merged
    from deploy.settings import load_stage

    settings = load_stage(package_dir.parent / "project", "prod")
    template = sam_template(package_dir)
    check_merged(settings, template)  # the real output passes
    renamed = copy.deepcopy(template)
    renamed["Resources"]["EfsLoader2"] = renamed["Resources"].pop("EfsLoader")
    renamed["Resources"]["EfsLoader"] = {"Properties": renamed["Resources"]["EfsLoader2"][
        "Properties"]}  # what a merge into a missing id leaves: no Type
    with pytest.raises(DeployError, match="no AWS::Serverless::Function EfsLoader for "
                                          "efs_loader"):
        check_merged(settings, renamed)
