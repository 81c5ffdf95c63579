"""A person's flow in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium; no browser download) against the running system.
Logs into the Django admin, creates and edits a product, sees it in the catalog API, opens the
interactive API docs, and finds the task in Flower. Screenshots: tests/artifacts/browser/."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from harness import processes
from harness.waiting import wait_until

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"))
SHOTS = processes.ARTIFACTS / "browser"
INSTALL = "sudo apt-get install -y chromium chromium-driver   (Debian; see README 'Tests')"


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:  # a failure, never a skip: CI must run this test
        pytest.fail(f"browser test needs {', '.join(missing)}; install with:\n  {INSTALL}",
                    pytrace=False)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    log = processes.ARTIFACTS / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)),
                              options=options)
    driver.implicitly_wait(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def wait_for(driver, css: str, timeout: float = 15):
    from selenium.webdriver.common.by import By

    return wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, css), timeout=timeout,
                      message=lambda: f"{css} on {driver.current_url}")[0]


def test_admin_to_catalog_to_flower_in_a_browser(browser, stack):  # browser first: fail fast
    from selenium.webdriver.common.by import By

    d = browser
    title = f"Browser mug {uuid.uuid4().hex[:6]}"

    # 1. log into the Django admin
    d.get(f"{stack.admin}/admin/login/?next=/admin/products/product/add/")
    wait_for(d, "#id_username").send_keys(stack.username)
    d.find_element(By.ID, "id_password").send_keys(stack.password)
    shot(d, "01-admin-login")
    d.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # 2. create a product
    wait_for(d, "#id_title").send_keys(title)
    d.find_element(By.ID, "id_price").send_keys("12.50")
    d.find_element(By.ID, "id_image").send_keys("https://example.com/mug.png")
    d.find_element(By.ID, "id_description").send_keys("Made in a browser.")
    shot(d, "02-admin-add-product")
    d.find_element(By.NAME, "_continue").click()  # "Save and continue editing"
    wait_until(lambda: "/change/" in d.current_url, timeout=15,
               message=lambda: f"the change page, got {d.current_url}: "
                               f"{d.find_element(By.TAG_NAME, 'body').text[:500]}")
    pid = int(d.current_url.rstrip("/").split("/")[-2])
    assert "was added successfully" in d.find_element(By.CSS_SELECTOR, ".messagelist").text
    shot(d, "03-admin-product-added")

    # 3. edit it
    price = wait_for(d, "#id_price")
    price.clear()
    price.send_keys("9.75")
    d.find_element(By.NAME, "_continue").click()
    wait_until(lambda: "was changed successfully" in d.find_element(
        By.TAG_NAME, "body").text, timeout=15, message="the change to be saved")
    shot(d, "04-admin-product-changed")

    # 4. the catalog has it, edited: the JSON in the browser, and checked over HTTP
    def in_catalog():
        r = requests.get(f"{stack.catalog}/api/products/{pid}/", timeout=5)
        return r.status_code == 200 and r.json()["version"] == 2 and r.json()

    row = wait_until(in_catalog, timeout=20, message="the edited product in the catalog")
    assert row["title"] == title and row["price"] == "9.75"
    d.get(f"{stack.catalog}/api/products/{pid}/?format=json")
    assert '"price":"9.75"' in d.find_element(By.TAG_NAME, "body").text.replace(" ", "")
    shot(d, "05-catalog-api-product")

    # 5. the interactive API docs render from local files (Swagger UI from the sidecar)
    d.get(f"{stack.admin}/api/docs/")
    wait_for(d, ".swagger-ui .info .title")
    assert "Product admin API" in d.find_element(By.CSS_SELECTOR, ".info .title").text
    wait_for(d, ".opblock-summary-path")
    shot(d, "06-admin-api-docs")

    # 6. Flower (basic auth sent as a header) lists the tasks that carried the events
    user, password = stack.flower_auth
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                      {"headers": {"Authorization": f"Basic {token}"}})
    d.get(f"{stack.flower}/tasks")
    wait_until(lambda: "catalog.apply_product_events" in d.find_element(By.TAG_NAME, "body").text,
               timeout=30, message="Flower's task list")
    shot(d, "07-flower-tasks")
    # the task that carried the edit: its page shows the event (type, product, version, id)
    wanted = f"product.updated #{pid} v2"

    def task_id():
        tasks = requests.get(f"{stack.flower}/api/tasks", auth=stack.flower_auth,
                             timeout=5).json()
        return next((tid for tid, t in tasks.items() if wanted in (t.get("kwargs") or "")), None)

    tid = wait_until(task_id, timeout=30, message=f"a task with {wanted} in Flower")
    d.get(f"{stack.flower}/task/{tid}")
    wait_until(lambda: wanted in d.find_element(By.TAG_NAME, "body").text, timeout=15,
               message=lambda: d.find_element(By.TAG_NAME, "body").text[:1500])
    assert "SUCCESS" in d.find_element(By.TAG_NAME, "body").text
    shot(d, "08-flower-task")
    d.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


def test_without_chromium_the_browser_test_fails_and_says_how_to_install_it():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_browser.py", "-p", "no:django", "-q",
         "-k", "in_a_browser", "-p", "no:cacheprovider"],
        cwd=processes.REPO, capture_output=True, text=True, timeout=120,
        env=processes.base_env(CHROMIUM_BINARY="/nonexistent/chromium"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout, result.stdout
    assert "apt-get install -y chromium chromium-driver" in result.stdout


def test_make_test_without_chromium_or_root_stops_at_once_with_the_command_to_run(tmp_path):
    """`make test` (scripts/test_deps.sh) as a user who cannot install: one line, exit 1, and
    nothing after it runs (as root, or with `sudo -n`, it installs the packages instead)."""
    import shutil
    import subprocess

    runuser = shutil.which("runuser")
    assert runuser and os.geteuid() == 0, "this test runs the script as `nobody` (needs root)"
    result = subprocess.run(
        [runuser, "-u", "nobody", "--", "env", "CHROMIUM_BINARY=/nonexistent/chromium",
         "PATH=/usr/bin:/bin", "bash", str(processes.REPO / "scripts" / "test_deps.sh")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "", result.stdout
    assert result.stderr.strip().splitlines() == [
        "make test: the tests need Debian's chromium chromium-driver: run 'sudo apt-get install "
        "-y chromium chromium-driver' and then 'make test' again"], result.stderr
