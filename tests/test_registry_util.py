import pytest

from recstudio.utils.errors import ConfigError
from recstudio.utils.registry import Registry


def test_register_lookup_and_suggest():
    reg = Registry("loss")

    @reg.register("BPR", paper="Rendle 2009")
    class B:
        pass

    assert reg.get("bpr") is B and reg.canonical("Bpr") == "BPR" and "bpr" in reg
    assert reg.info["BPR"]["paper"] == "Rendle 2009"
    with pytest.raises(ConfigError, match="unknown loss 'bpe'.*Did you mean 'BPR'.*Available: BPR"):
        reg.get("bpe")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("bpr")(B)


def test_aliases_resolve_to_the_main_name():
    reg = Registry("model")

    @reg.register("NCF", aliases=("NeuMF",))
    class N:
        pass

    assert reg.get("neumf") is N and reg.canonical("NeuMF") == "NCF" and reg.names() == ["NCF"]
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("neumf")(N)
