"""Change the cache between two cells of a real `ablate`, as a `features` run started beside it would."""


def change_after_the_first_cell(monkeypatch, change) -> None:
    """Run ``change()`` once, right after the ablation's first cell has trained (``monkeypatch.undo()`` ends it)."""
    import train.ablate as ablate_module

    real, calls = ablate_module.train, []

    def train_then_change(c):
        m = real(c)
        if not calls:
            change()
        calls.append(c.out)
        return m

    monkeypatch.setattr(ablate_module, "train", train_then_change)
