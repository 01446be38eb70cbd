#!/usr/bin/env python3
"""Drives the playground of `ibke serve` in a real headless Chromium (Debian's chromium and
chromium-driver, Selenium from PyPI): make the Eiffel Tower → Rome edit, read the
after-probability, ask the edited model and get "Rome", revert and get "Paris" again. Saves a
screenshot after each step.

    apt-get install chromium chromium-driver && pip install selenium
    python3 Scripts/serve_browser_test.py --ibke .build/release/ibke --out runs/browser [--method ft-m] [-- serve options]

Starts the server itself (a free port, a fresh --state folder) and stops it at the end; exits
non-zero on the first step that does not do what it should.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ibke", default=".build/release/ibke")
    parser.add_argument("--out", default="runs/browser")
    parser.add_argument("--method", default="ft-m")
    parser.add_argument("--timeout", type=float, default=600, help="seconds the edit may take")
    parser.add_argument("serve", nargs="*", help="more `ibke serve` options (after --)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    port = free_port()
    state = tempfile.mkdtemp(prefix="ibke-browser-")
    log = open(os.path.join(args.out, "serve.log"), "w")
    server = subprocess.Popen([args.ibke, "serve", "--port", str(port), "--state", state] + args.serve,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = None
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "v1/models", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"the server exited: see {log.name}")
                time.sleep(0.1)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
        wait = WebDriverWait(driver, args.timeout)

        def shot(name):
            path = os.path.join(args.out, name + ".png")
            driver.save_screenshot(path)
            print("screenshot:", path)

        def ask(prompt):
            """Sends a raw completion from the chat pane; the edited and the original answers."""
            exchanges = len(driver.find_elements(By.CSS_SELECTOR, "#chat-log .exchange"))
            box = driver.find_element(By.ID, "chat-input")
            box.clear()
            box.send_keys(prompt)
            driver.find_element(By.ID, "chat-send").click()
            # A new exchange whose two streams are done (the ids move to the latest exchange).
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat-log .exchange")) > exchanges
                       and d.find_elements(By.CSS_SELECTOR, "#chat-edited[data-done='true']")
                       and d.find_elements(By.CSS_SELECTOR, "#chat-original[data-done='true']"))
            return (driver.find_element(By.ID, "chat-edited").text, driver.find_element(By.ID, "chat-original").text)

        driver.get(base)
        wait.until(lambda d: d.find_element(By.ID, "model-name").text not in ("", "loading…"))
        print("page loaded, model:", driver.find_element(By.ID, "model-name").text)
        Select(driver.find_element(By.ID, "method")).select_by_value(args.method)
        driver.find_element(By.ID, "apply").click()
        probability = wait.until(ready.presence_of_element_located((By.ID, "after-target-probability")))
        value = float(probability.text)
        print(f"edit applied with {args.method}: P(Rome) after = {value:.4f}")
        assert value > 0.5, value
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "button.revert"))
        shot("1-edited")

        prompt = "The Eiffel Tower is located in the city of"
        edited, original = ask(prompt)
        print(f"chat: edited {edited!r}, original {original!r}")
        assert edited.strip().startswith("Rome"), edited
        assert original.strip().startswith("Paris"), original
        shot("2-chat")

        driver.find_element(By.CSS_SELECTOR, "button.revert").click()
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "button.revert"))
        time.sleep(0.2)
        edited, _ = ask(prompt)
        print(f"after the revert: edited {edited!r}")
        assert edited.strip().startswith("Paris"), edited
        shot("3-reverted")
        print("ok")
    finally:
        if driver:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
