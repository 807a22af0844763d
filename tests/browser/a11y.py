"""Accessibility checks run inside a Playwright page: labels, landmarks, headings, language and
colour contrast (WCAG 2.2 relative luminance). Written here rather than taken from axe-core so the
suite needs nothing from a package registry; each check returns plain findings that the tests
assert to be empty, so a failure names the element and the numbers.

The contrast check looks at every visible text node plus the values shown in text inputs and
selects, takes the computed `color` (with the opacity of its ancestors) and composites the
`background-color` of the element and its ancestors over white. Text over a background image or
gradient cannot be judged this way and is reported separately as "unknown" rather than passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from playwright.sync_api import Page

MIN_CONTRAST: Final = 4.5

# Returns a short CSS-like path for an element, used in every finding.
_DESCRIBE_JS: Final = r"""
const describe = (el) => {
  const parts = [];
  let node = el;
  while (node && node.nodeType === 1 && parts.length < 4) {
    let part = node.localName;
    if (node.id) { parts.unshift(part + "#" + node.id); break; }
    if (node.classList.length) part += "." + [...node.classList].join(".");
    parts.unshift(part);
    node = node.parentElement;
  }
  return parts.join(" > ");
};
"""

_LABELS_JS: Final = _DESCRIBE_JS + r"""
() => {
  const text = (el) => (el ? (el.textContent || "").replace(/\s+/g, " ").trim() : "");
  const found = [];
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const names = [];
    if (el.id) {
      for (const label of document.querySelectorAll("label")) {
        if (label.htmlFor === el.id && text(label)) names.push("label[for]");
      }
    }
    const wrapping = el.closest("label");
    if (wrapping && text(wrapping)) names.push("wrapping label");
    if ((el.getAttribute("aria-label") || "").trim()) names.push("aria-label");
    const labelledby = (el.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
    if (labelledby.length && labelledby.every((id) => document.getElementById(id))
        && labelledby.map((id) => text(document.getElementById(id))).join("")) {
      names.push("aria-labelledby");
    }
    found.push({element: describe(el), name: el.name || "", labels: names});
  }
  return found;
}
"""

_REFERENCES_JS: Final = _DESCRIBE_JS + r"""
() => {
  const broken = [];
  for (const attr of ["aria-describedby", "aria-labelledby", "aria-controls"]) {
    for (const el of document.querySelectorAll("[" + attr + "]")) {
      for (const id of el.getAttribute(attr).split(/\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) broken.push(describe(el) + " " + attr + "=" + id);
      }
    }
  }
  const seen = new Map();
  for (const el of document.querySelectorAll("[id]")) {
    seen.set(el.id, (seen.get(el.id) || 0) + 1);
  }
  for (const [id, count] of seen) {
    if (count > 1) broken.push("id '" + id + "' is used " + count + " times");
  }
  return broken;
}
"""

_STRUCTURE_JS: Final = r"""
() => {
  const count = (selector) => document.querySelectorAll(selector).length;
  // header and footer are banner/contentinfo landmarks only outside sectioning content.
  const topLevel = (tag) => [...document.querySelectorAll(tag)].filter(
    (el) => !el.parentElement.closest("article, aside, main, nav, section")).length;
  return {
    lang: document.documentElement.getAttribute("lang") || "",
    title: document.title.trim(),
    h1: [...document.querySelectorAll("h1")].map((h) => h.textContent.trim()),
    banner: topLevel("header") + count('[role="banner"]'),
    main: count("main") + count('[role="main"]'),
    contentinfo: topLevel("footer") + count('[role="contentinfo"]'),
  };
}
"""

_CONTRAST_JS: Final = _DESCRIBE_JS + r"""
() => {
  const canvas = document.createElement("canvas").getContext("2d");
  const parse = (value) => {
    let m = /^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/.exec(value);
    if (!m) {
      // Other syntaxes (color(srgb ...), hsl ...): let the canvas normalise them.
      canvas.fillStyle = "#000";
      canvas.fillStyle = value;
      const normal = canvas.fillStyle;
      const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(normal);
      if (hex) return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16), 1];
      m = /^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/.exec(normal);
      if (!m) return null;
    }
    return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage && style.backgroundImage !== "none") return {unknown: true};
      const colour = parse(style.backgroundColor);
      if (colour && colour[3] > 0) {
        layers.push(colour);
        if (colour[3] >= 1) break;
      }
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return {colour: result};
  };
  const opacity = (el) => {
    let value = 1;
    for (let node = el; node; node = node.parentElement) {
      value *= Number(getComputedStyle(node).opacity);
    }
    return value;
  };
  const visible = (el) => {
    if (!el.checkVisibility({opacityProperty: true, visibilityProperty: true})) return false;
    const rect = el.getBoundingClientRect();
    // Screen-reader-only text (1px, clipped) and content moved off screen are not seen.
    if (rect.width <= 1 || rect.height <= 1) return false;
    if (rect.right <= 0 || rect.bottom <= 0) return false;
    for (let node = el; node; node = node.parentElement) {
      const clip = getComputedStyle(node).clip;
      if (clip && clip !== "auto" && /rect\(0(px)?,? 0(px)?,? 0(px)?,? 0(px)?\)/.test(clip)) return false;
    }
    return true;
  };
  const channel = (v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  };
  const luminance = (c) => 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2]);
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const hex = (c) => "#" + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");

  const carriers = new Map();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/\s+/g, " ").trim();
    const el = node.parentElement;
    if (!text || !el || el.closest("script, style, noscript, template, option")) continue;
    carriers.set(el, ((carriers.get(el) || "") + " " + text).trim());
  }
  for (const el of document.querySelectorAll("input, select, textarea")) {
    // The value a person typed (placeholders have their own ::placeholder colour; none are used).
    const typed = ["text", "email", "search", "tel", "url", "number", "date"];
    const shown = el.localName === "select"
      ? (el.selectedOptions[0] ? el.selectedOptions[0].textContent.trim() : "")
      : (typed.includes(el.type) || el.localName === "textarea") ? el.value : "";
    if (shown) carriers.set(el, shown);
  }

  const results = [];
  for (const [el, text] of carriers) {
    if (!visible(el)) continue;
    const style = getComputedStyle(el);
    const fg = parse(style.color);
    const bg = background(el);
    const entry = {element: describe(el), text: text.slice(0, 60), color: style.color,
                   fontSize: style.fontSize, fontWeight: style.fontWeight};
    if (!fg || bg.unknown) { results.push({...entry, unknown: true}); continue; }
    const fgEffective = over([fg[0], fg[1], fg[2], fg[3] * opacity(el)], bg.colour);
    results.push({...entry, foreground: hex(fgEffective), background: hex(bg.colour),
                  ratio: ratio(fgEffective, bg.colour)});
  }
  return results;
}
"""

_OVERFLOW_JS: Final = _DESCRIBE_JS + r"""
(width) => {
  const scroll = document.scrollingElement.scrollWidth;
  const wide = [];
  if (scroll > width + 1) {
    for (const el of document.body.querySelectorAll("*")) {
      const rect = el.getBoundingClientRect();
      if (rect.right > width + 1 && rect.width > 0 && rect.left >= -1) {
        wide.push(describe(el) + " right=" + Math.round(rect.right));
      }
    }
  }
  return {scrollWidth: scroll, wide: wide.slice(0, 8)};
}
"""


_LINKS_JS: Final = r"""
([urls, width]) => urls.map((url) => {
  const links = [...document.querySelectorAll("a[href]")].filter((a) => a.getAttribute("href") === url);
  const shown = links.find((a) => a.checkVisibility({opacityProperty: true, visibilityProperty: true}));
  if (!links.length) return "missing";
  if (!shown) return "hidden";
  const rect = shown.getBoundingClientRect();
  if (rect.width < 1 || rect.height < 1) return "hidden";
  return rect.left < 0 || rect.right > width + 1 ? "outside the window" : "";
})
"""


@dataclass(frozen=True)
class ContrastFinding:
    element: str
    text: str
    ratio: float | None
    foreground: str
    background: str

    def __str__(self) -> str:
        if self.ratio is None:
            return f"{self.element}: contrast unknown (background image?) for {self.text!r}"
        return (f"{self.element}: {self.foreground} on {self.background} is {self.ratio:.2f}:1 "
                f"(< {MIN_CONTRAST}:1) for {self.text!r}")


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls with no accessible name from label[for], a wrapping label, aria-label or
    aria-labelledby."""
    controls: list[dict[str, Any]] = page.evaluate(_LABELS_JS)
    return [f"{c['element']} (name={c['name']!r}) has no label" for c in controls if not c["labels"]]


def broken_references(page: Page) -> list[str]:
    """aria-describedby/-labelledby/-controls naming missing ids, and duplicate ids."""
    found: list[str] = page.evaluate(_REFERENCES_JS)
    return found


def structure_problems(page: Page) -> list[str]:
    """html lang, a title, exactly one h1, and the banner, main and contentinfo landmarks."""
    facts: dict[str, Any] = page.evaluate(_STRUCTURE_JS)
    problems = []
    if not facts["lang"].strip():
        problems.append("<html> has no lang attribute")
    if not facts["title"]:
        problems.append("the page has no <title>")
    if len(facts["h1"]) != 1:
        problems.append(f"expected exactly one h1, found {len(facts['h1'])}: {facts['h1']}")
    for landmark, element in (("banner", "header"), ("main", "main"), ("contentinfo", "footer")):
        if facts[landmark] != 1:
            problems.append(f"expected one {landmark} landmark (<{element}>), found {facts[landmark]}")
    return problems


def contrast_report(page: Page, minimum: float = MIN_CONTRAST) -> tuple[int, list[ContrastFinding]]:
    """How many visible texts were judged, and those whose contrast with their effective
    background is below `minimum` (or cannot be computed)."""
    results: list[dict[str, Any]] = page.evaluate(_CONTRAST_JS)
    findings = []
    for item in results:
        if item.get("unknown"):
            findings.append(ContrastFinding(item["element"], item["text"], None, item["color"], "?"))
        elif item["ratio"] < minimum:
            findings.append(ContrastFinding(item["element"], item["text"], float(item["ratio"]),
                                            item["foreground"], item["background"]))
    return len(results), findings


def contrast_findings(page: Page, minimum: float = MIN_CONTRAST) -> list[ContrastFinding]:
    return contrast_report(page, minimum)[1]


def horizontal_overflow(page: Page, width: int) -> tuple[int, list[str]]:
    """The document's scroll width and, when it is wider than `width`, the elements sticking out."""
    facts: dict[str, Any] = page.evaluate(_OVERFLOW_JS, width)
    return int(facts["scrollWidth"]), list(facts["wide"])


def link_problems(page: Page, urls: dict[str, str], width: int) -> list[str]:
    """For each label -> URL, whether a visible link to exactly that URL lies inside the window."""
    states: list[str] = page.evaluate(_LINKS_JS, [list(urls.values()), width])
    return [f"the {label} link is {state}" for label, state in zip(urls, states, strict=True) if state]


@dataclass(frozen=True)
class Audit:
    problems: list[str]
    texts_checked: int
    """Guards against a contrast check that silently saw nothing."""


def audit(page: Page) -> Audit:
    """Every problem the checks above find on the current page, as readable lines."""
    checked, findings = contrast_report(page)
    problems = [
        *unlabelled_controls(page),
        *broken_references(page),
        *structure_problems(page),
        *(str(finding) for finding in findings),
    ]
    return Audit(problems, checked)
