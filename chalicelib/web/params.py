"""Query parameters shared by routes, parsed strictly: a value we cannot read is a 400 saying
which values work, never silently taken as the default."""
from typing import Optional

from chalicelib.errors import InvalidParameter

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def flag(params: Optional[dict], name: str) -> bool:
    """?name=true|1|yes -> True; absent, false, 0, no -> False."""
    value = (params or {}).get(name)
    if value is None:
        return False
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise InvalidParameter(f"{name}={value!r} is not a yes or no: use {name}=true or "
                           f"{name}=false.")
