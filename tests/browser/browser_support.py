"""Helpers for the browser tests (imported by name: tests are not a package)."""
from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The README's screenshots are rewritten only when asked (RUNBOARD_SCREENSHOTS=1), so a
#: test run leaves the checkout clean; otherwise they go to a scratch folder.
SCREENSHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("RUNBOARD_SCREENSHOTS") == "1"
               else Path(os.environ.get("TMPDIR", "/tmp")) / "runboard-screenshots")
CHROMIUM = os.environ.get("RUNBOARD_TEST_CHROMIUM", "/usr/bin/chromium")     # Debian's package
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
ADMIN, PASSWORD = "admin", "browser-admin-password"
FINISHED = ("completed", "failed", "stopped")
#: A batch run of ~25 s (3 phases × 170 jobs × 0.05 s) whose failed jobs log warnings.
LONG_BATCH = {"phases": ["prepare", "process", "report"], "jobs_per_phase": 170, "fail_rate": 0.3,
              "job_seconds": 0.05}


def sign_in(page, name: str = ADMIN, password: str = PASSWORD) -> None:
    """Through the login form; ends on the overview."""
    page.goto("/admin/login")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    with page.expect_navigation():
        page.click("#login-submit")
    assert re.search(r"/admin/(\?.*)?$", page.url), f"not on the overview after signing in: {page.url}"


def progress_value(page, selector: str) -> float:
    return float(page.locator(selector).get_attribute("value") or 0)


# Every problem found, as "rule: element" strings.  One pass over the rendered DOM.
A11Y_SCRIPT = r"""
() => {
  const problems = [];
  const name = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    const cls = (el.getAttribute("class") || "").trim();
    if (cls) s += "." + cls.split(/\s+/).join(".");
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return text ? `${s} "${text}"` : s;
  };
  const shown = (el) => el.checkVisibility ? el.checkVisibility({visibilityProperty: true}) : !!el.offsetParent;
  const refsExist = (el, attr) => (el.getAttribute(attr) || "").split(/\s+/).filter(Boolean)
      .some((id) => { const t = document.getElementById(id); return t && t.textContent.trim(); });

  if (!(document.documentElement.getAttribute("lang") || "").trim()) problems.push("html[lang]: missing");

  document.querySelectorAll("input, select, textarea").forEach((el) => {
    if (el.type === "hidden") return;
    const labelled = [...(el.labels || [])].some((l) => l.textContent.trim())
      || (el.getAttribute("aria-label") || "").trim() || refsExist(el, "aria-labelledby");
    if (!labelled) problems.push("label: " + name(el));
  });

  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].filter(shown);
  const h1s = headings.filter((h) => h.tagName === "H1").length;
  if (h1s !== 1) problems.push(`headings: ${h1s} h1 elements (want exactly one)`);
  let previous = 0;
  headings.forEach((h) => {
    const level = Number(h.tagName[1]);
    if (level > previous + 1) problems.push(`headings: h${level} after h${previous}: ` + name(h));
    previous = level;
  });

  document.querySelectorAll("img").forEach((el) => {
    if (!(el.getAttribute("alt") || "").trim() && el.getAttribute("role") !== "presentation")
      problems.push("image name: " + name(el));
  });
  document.querySelectorAll("svg").forEach((el) => {
    if (el.getAttribute("aria-hidden") === "true") return;
    const title = el.querySelector(":scope > title");
    const named = (el.getAttribute("aria-label") || "").trim() || refsExist(el, "aria-labelledby")
      || (title && title.textContent.trim());
    if (el.getAttribute("role") !== "img" || !named) problems.push("svg name: " + name(el));
  });

  document.querySelectorAll("button, input[type=submit], input[type=button], [role=button]").forEach((el) => {
    const text = (el.tagName === "INPUT" ? el.value : el.textContent) || el.getAttribute("aria-label") || "";
    if (!text.trim()) problems.push("button text: " + name(el));
  });
  document.querySelectorAll("a[href]").forEach((el) => {
    if (!el.textContent.trim() && !(el.getAttribute("aria-label") || "").trim()) problems.push("link text: " + name(el));
  });

  // Contrast (WCAG 2.x): sRGB relative luminance, (L1 + .05) / (L2 + .05).
  const rgba = (text) => {
    const m = text.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const [r, g, b, a] = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [r, g, b, a === undefined || Number.isNaN(a) ? 1 : a];
  };
  const over = (top, bottom) => top.slice(0, 3).map((c, i) => c * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const bg = rgba(getComputedStyle(node).backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; }
    }
    return layers.reduceRight((below, layer) => over(layer, below), [255, 255, 255, 1]);
  };
  const luminance = ([r, g, b]) => {
    const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    if (el.closest("progress, option, script, style, title, desc") || !shown(el)) continue;
    const style = getComputedStyle(el);
    const bg = background(el);
    const fgText = el instanceof SVGElement ? style.fill : style.color;
    const fg = rgba(fgText);
    if (!fg) continue;
    const contrast = ratio(over(fg, bg), bg);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const needed = large ? 3 : 4.5;
    if (contrast < needed) problems.push(`contrast ${contrast.toFixed(2)} < ${needed}: ` + name(el)
      + ` (${fgText} on rgb(${bg.slice(0, 3).map(Math.round).join(", ")}))`);
  }
  return problems;
}
"""


def accessibility_problems(page) -> list[str]:
    return page.evaluate(A11Y_SCRIPT)
