#!/usr/bin/env python3
"""Renders a kustomization like `kubectl kustomize DIR`, for machines
without kubectl or kustomize (CI validates the output with
kubernetes-validate).

It implements only what deploy/kubernetes uses: resources (files and
directories), namespace, images, labels (pairs, includeSelectors) and
configMapGenerator (files, disableNameSuffixHash). Anything else is an
error, so a new feature in a kustomization cannot be skipped silently.
"""
import os
import sys

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "images", "labels", "configMapGenerator"}
# Where kustomize applies label selectors (includeSelectors: true).
SELECTORS = {
    "Deployment": [["spec", "selector", "matchLabels"], ["spec", "template", "metadata", "labels"]],
    "Service": [["spec", "selector"]],
    "PodDisruptionBudget": [["spec", "selector", "matchLabels"]],
    "NetworkPolicy": [["spec", "podSelector", "matchLabels"]],
    "ServiceMonitor": [["spec", "selector", "matchLabels"]],
}


def fail(msg):
    sys.exit(f"render.py: {msg}")


def at(doc, path):
    for key in path:
        doc = doc.setdefault(key, {})
    return doc


def build(root):
    with open(os.path.join(root, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KNOWN
    if unknown:
        fail(f"{root}: unsupported kustomization fields {sorted(unknown)}")
    docs = []
    for r in k.get("resources", []):
        path = os.path.join(root, r)
        if os.path.isdir(path):
            docs += build(path)
        else:
            with open(path) as f:
                docs += [d for d in yaml.safe_load_all(f) if d]
    for g in k.get("configMapGenerator", []):
        if not g.get("options", {}).get("disableNameSuffixHash"):
            fail(f"{root}: configMapGenerator {g['name']}: only disableNameSuffixHash: true is supported")
        data = {}
        for spec in g["files"]:
            key, _, path = spec.rpartition("=") if "=" in spec else (os.path.basename(spec), "", spec)
            with open(os.path.join(root, path)) as f:
                data[key] = f.read()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data})
    for label in k.get("labels", []):
        for d in docs:
            at(d, ["metadata", "labels"]).update(label["pairs"])
            if label.get("includeSelectors"):
                for path in SELECTORS.get(d["kind"], []):
                    at(d, path).update(label["pairs"])
    for img in k.get("images", []):
        for d in docs:
            pod = d.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                if c["image"] == img["name"]:
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    if "namespace" in k:
        for d in docs:
            if d["kind"] != "Namespace":
                d["metadata"]["namespace"] = k["namespace"]
    return docs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: render.py KUSTOMIZATION_DIR")
    yaml.safe_dump_all(build(sys.argv[1]), sys.stdout, sort_keys=False)
