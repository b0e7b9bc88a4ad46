"""A rich progress bar for long work (compiling many kernels, tuning); silent when disabled."""


class progress:
    """`with progress(enabled, label, total) as step: ... step()` advances the bar by one."""

    def __init__(self, enabled, label, total, transient=True):
        self.enabled, self.label, self.total, self.transient = enabled, label, total, transient

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        self.p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), transient=self.transient)
        self.p.__enter__()
        task = self.p.add_task(self.label, total=self.total)
        return lambda: self.p.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self.p.__exit__(*exc)
