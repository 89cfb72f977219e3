"""The envelope every KubeML kind shares, and what the CRD needs to know of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import KubeModel, ObjectMeta


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column."""

    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class CrdInfo:
    """Names and presentation of a kind; the schema comes from the model."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    summary_condition: str
    printer_columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("kubeml",)
    # Rules on the root of the object (spec together with metadata or status).
    root_rules: tuple[dict[str, str], ...] = field(default_factory=tuple)


def condition_column(name: str, cond: str, what: str = "status") -> PrinterColumn:
    return PrinterColumn(
        name=name,
        json_path=f'.status.conditions[?(@.type=="{cond}")].{what}',
        description=f"The {cond} condition's {what}",
    )


AGE = PrinterColumn(name="Age", json_path=".metadata.creationTimestamp", type="date")


class Resource(KubeModel):
    """apiVersion, kind, metadata; subclasses add spec and status."""

    crd: ClassVar[CrdInfo]

    api_version: Literal["kubeml.io/v1alpha1"] = Field(
        default="kubeml.io/v1alpha1", alias="apiVersion"
    )
    """Always kubeml.io/v1alpha1."""
    kind: str
    """The kind's name."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
