"""Click options shared by several commands."""

from __future__ import annotations

import click


class PluginOption(click.Option):
    """An option naming a plugin: its help lists the registered names (third parties' too) when help is shown,
    so registering the command reads no metadata and imports no plugin."""

    def __init__(self, *args, kind: str, label: str = "", example: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.label = label
        self.example = example

    def get_help_record(self, ctx: click.Context):
        from balloonsim import registry

        kind = next(k for k in registry.KINDS if k.group == self.kind)
        self.help = f"{self.label or kind.path}: {', '.join(registry.names(kind))}{self.example}."
        return super().get_help_record(ctx)
