"""The one exception type the deploy tooling raises for problems a user can fix."""


class DeployError(Exception):
    """A problem the user can fix; the message says what and where. Raised before anything is
    deployed when it can be detected then."""
