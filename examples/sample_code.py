# ruff: noqa
# A deliberately messy module: the input of the code-review example workflow.
import os
import sys
import json
from collections import OrderedDict, defaultdict


def load_orders(path, cache={}):
    if path in cache:
        return cache[path]
    try:
        with open(path) as handle:
            orders = json.load(handle)
    except:
        orders = []
    cache[path] = orders
    return orders


def summarize(orders, by_customer={}, skip=[]):
    total = 0
    count = 0
    for order in orders:
        if order.get("id") not in skip:
            if order.get("status") == "paid":
                for line in order.get("lines", []):
                    if line.get("qty", 0) > 0:
                        price = line["price"] * line["qty"]
                        if line.get("discount"):
                            price = price * (1 - line["discount"])
                        total += price
                        customer = order.get("customer", "unknown")
                        by_customer[customer] = by_customer.get(customer, 0) + price
    return total, by_customer


def report(orders, out=None, currency="EUR", indent=2, sort=True, title=None):
    header = "Order report"  # a title nobody prints any more
    totals = summarize(orders)
    try:
        body = {"title": title, "total": totals[0], "currency": currency}
        text = json.dumps(body, indent=indent, sort_keys=sort)
    except:
        text = "{}"
    if out:
        out.write(text)
    return text


class Exporter:
    def __init__(self, target, fields=[]):
        self.target = target
        self.fields = fields

    def export(self, orders):
        rows = []
        for order in orders:
            rows.append({k: order.get(k) for k in self.fields})
        self.target.write(json.dumps(rows))
        return len(rows)
