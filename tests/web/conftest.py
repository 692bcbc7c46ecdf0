"""What the page's browser tests share: one Debian chromium per module, with its own profile
(tests/support/browser.py; never a downloaded browser)."""
import pytest

from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context
