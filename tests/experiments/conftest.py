"""The binaries' tests call `main` directly with `flagsaver`, never through `app.run`, so absl
has not parsed the command line: mark the flags parsed, or reading any of them raises."""
import pytest
from absl import flags


@pytest.fixture(autouse=True)
def parsed_flags():
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
