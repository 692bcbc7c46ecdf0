"""The context object Lambda passes a handler: the attributes a handler may read. Standard
library only: runner.py and probe.py load it by its path, in a bare interpreter."""
import time


class LambdaContext:
    function_name = "chest-xray-dev"
    function_version = "$LATEST"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:chest-xray-dev"
    log_group_name = "/aws/lambda/chest-xray-dev"
    log_stream_name = "local"

    def __init__(self, request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                 timeout_s: float = 28) -> None:
        self.aws_request_id = request_id
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)
