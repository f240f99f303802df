"""Monthly storage cost of the COG tiers from configurable per-GB prices (the tier upsell's business case)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

GIB = 1024**3

#: the blob access tier each COG tier is stored in
ACCESS_TIER = {"visualization": "Hot", "analysis": "Hot", "archive": "Cool"}


def monthly_costs(
    sizes: Mapping[str, int], *, price_hot: float, price_cool: float, currency: str = "USD"
) -> dict[str, Any]:
    """Per tier: bytes, GB, access tier, price per GB-month and the monthly cost; plus the total."""
    prices = {"Hot": price_hot, "Cool": price_cool}
    tiers: dict[str, dict[str, Any]] = {}
    for tier, size in sizes.items():
        access = ACCESS_TIER.get(tier, "Hot")
        gb = size / GIB
        tiers[tier] = {
            "bytes": int(size),
            "gb": round(gb, 6),
            "access_tier": access,
            "price_per_gb_month": prices[access],
            "monthly_cost": round(gb * prices[access], 6),
        }
    return {
        "currency": currency,
        "tiers": tiers,
        "total_monthly_cost": round(sum(t["monthly_cost"] for t in tiers.values()), 6),
    }


def sizes_by_tier(outputs: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for output in outputs:
        sizes[output["tier"]] = sizes.get(output["tier"], 0) + int(output["size"])
    return sizes
