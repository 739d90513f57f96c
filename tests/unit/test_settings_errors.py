"""Settings a newcomer gets wrong: JSON lists read as JSON, one line naming the RUNYARD_* variable."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from service.api.auth import ApiKeys
from service.core.settings import InvalidSettings, Settings, load_settings


def test_api_keys_as_a_json_list_are_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_API_KEYS", '["a", "b"]')
    keys = ApiKeys.from_settings(load_settings())
    assert keys.accepts("a")
    assert keys.accepts("b")
    assert not keys.accepts('["a"')


def test_api_keys_comma_separated_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNYARD_API_KEYS", "a, b")
    assert load_settings().plain_api_keys() == ["a", "b"]


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("RUNYARD_LOCAL_MAX_CONCURRENT", "abc", "valid integer"),
    ("RUNYARD_SOURCES", "mine=/tmp", 'JSON object of name -> folder, e.g. {"mine": "/srv/scripts"}'),
    ("RUNYARD_DATASET_ROOTS", "/srv/data", "JSON list of folders"),
    ("RUNYARD_API_KEYS", '["a",', "not valid JSON"),
])
def test_a_bad_setting_names_its_variable_and_what_it_expects(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as caught:
        load_settings()
    assert str(caught.value).startswith(f"{variable}:")
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_python_m_service_prints_one_line_not_a_traceback() -> None:
    env = {"RUNYARD_LOCAL_MAX_CONCURRENT": "abc", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", "from service.__main__ import main; main()"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "runyard: invalid setting: RUNYARD_LOCAL_MAX_CONCURRENT: Input should be a valid integer, "
        "unable to parse string as an integer"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_format_auto_is_text_on_a_terminal_and_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "auto"
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert Settings().resolved_log_format() == "text"
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert Settings().resolved_log_format() == "json"
    assert Settings(log_format="text").resolved_log_format() == "text"
