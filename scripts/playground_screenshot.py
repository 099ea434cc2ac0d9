"""Screenshot of the steering playground of a rendered MF report, for the README (headless system Chromium).

    python scripts/playground_screenshot.py reports/ml-1m/visualization_SAE_mf.html docs/steering_playground.png \
        --persona Horror --concept Horror --strength -1

Opens the report, picks the persona whose label contains --persona, moves the concept slider (group edit) to
--strength and saves the playground element as a PNG.
"""
import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Render the screenshot; returns the exit status."""
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--persona", default="Horror")
    ap.add_argument("--concept", default="Horror")
    ap.add_argument("--strength", type=float, default=-1.0)
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = ap.parse_args(argv)
    if not args.chromium:
        print("no system chromium on PATH", file=sys.stderr)
        return 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1150, "height": 900})
        page.goto(args.report.resolve().as_uri(), wait_until="load")
        page.wait_for_selector("#steering-playground[data-ready='1']", timeout=60_000)
        pg = page.locator("#steering-playground")
        option = pg.locator("select.pg-user optgroup").first.locator("option", has_text=args.persona).first
        pg.locator("select.pg-user").select_option(option.get_attribute("value"))
        pg.locator("select.pg-concept").select_option(label=args.concept)
        pg.locator("input.pg-concept-strength").evaluate(
            "(e, v) => { e.value = String(v); e.dispatchEvent(new Event('input')); }", args.strength)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(args.out))
        try:  # a 256-colour palette keeps the committed PNG small
            from PIL import Image

            Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)
        except ImportError:
            pass
        print(f"{args.out}: user {pg.get_attribute('data-user')}, {args.concept} {args.strength:+}, "
              f"RBO {float(pg.locator('.pg-summary').get_attribute('data-rbo')):.3f}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
