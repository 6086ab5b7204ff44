"""Drives ctld's web console in a real headless Chromium (Debian's chromium
and chromium-driver, selenium from the repository's .venv; see
scripts/install.sh). Run by ConsoleBrowserTests with:

    console_test.py BASE_URL TOKEN KEYSPACE SHARD BACKUP_NAME SCREENSHOT_DIR

Logs in, finds the shard and its backup, starts a backup and waits for its
job to finish, plans a restore, and checks the pages at phone width. Prints
one JSON line of what it saw; any failed check exits non-zero with the reason.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base, token, keyspace, shard, backup_name, shots = sys.argv[1:7]
os.makedirs(shots, exist_ok=True)
seen = {}


def check(condition, message):
    if not condition:
        raise SystemExit("console check failed: " + message)


def click_and_load(element):
    """Clicks a link or submit button and waits until the next page has replaced this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 120).until(EC.staleness_of(old))
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.readyState") == "complete")


options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(120)
try:
    # Nothing is shown without the token: the console sends us to the login page.
    driver.get(base + "/")
    check(driver.current_url.endswith("/login"), "the console did not ask for a login: " + driver.current_url)
    check(keyspace not in driver.find_element(By.TAG_NAME, "main").text, "the login page shows the keyspace")
    driver.get(base + "/ui/tablets")
    check(driver.current_url.endswith("/login"), "a console page was shown without a login")

    # A wrong token is refused.
    driver.find_element(By.NAME, "token").send_keys("not-the-token-at-all")
    click_and_load(driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    check("not ctld's auth token" in driver.page_source, "a wrong token was not refused")

    driver.find_element(By.NAME, "token").send_keys(token)
    click_and_load(driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    check(not driver.current_url.endswith("/login"), "the login with the right token failed: %s %s" % (driver.current_url, driver.page_source[:2000]))
    cookie = driver.get_cookie("cairn_session")
    check(cookie is not None, "no session cookie")
    check(cookie.get("httpOnly") is True, "the session cookie is not HttpOnly")
    check(cookie.get("sameSite") == "Strict", "the session cookie is not SameSite=Strict: %r" % cookie.get("sameSite"))
    driver.save_screenshot(os.path.join(shots, "1-keyspaces.png"))

    # Keyspaces, then shards, then the shard with its backup.
    click_and_load(driver.find_element(By.LINK_TEXT, keyspace))
    click_and_load(driver.find_element(By.LINK_TEXT, shard))
    check(backup_name in driver.page_source, "the shard page does not show backup " + backup_name)
    check(len(driver.find_elements(By.CSS_SELECTOR, "svg rect")) >= 2, "the shard page draws no timeline")
    check("restorable window" in driver.page_source, "the shard page does not draw the restorable window")
    shard_url = driver.current_url
    driver.save_screenshot(os.path.join(shots, "2-shard.png"))

    # Plan a restore (dry run) to the latest backup.
    click_and_load(driver.find_element(By.XPATH, "//button[contains(., 'Plan restore')]"))
    check("Restore plan (dry run)" in driver.page_source, "no restore plan was shown")
    check(backup_name in driver.find_element(By.CSS_SELECTOR, ".box table").text, "the plan does not use " + backup_name)
    driver.save_screenshot(os.path.join(shots, "3-plan.png"))

    # Start a backup: the job page reloads itself until the job ends.
    driver.get(shard_url)
    click_and_load(driver.find_element(By.XPATH, "//button[contains(., 'Start backup')]"))
    check("/ui/jobs/" in driver.current_url, "starting a backup did not lead to its job: " + driver.current_url)
    seen["job_url"] = driver.current_url

    def ended(d):
        text = d.find_element(By.TAG_NAME, "main").text
        return ("completed" in text or "failed" in text or "nothing to do" in text) and "Running;" not in text

    WebDriverWait(driver, 600, poll_frequency=1,
                  ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(ended)
    main = driver.find_element(By.TAG_NAME, "main").text
    driver.save_screenshot(os.path.join(shots, "4-job.png"))
    check("completed" in main, "the backup job did not complete: " + main)
    seen["job_text"] = main

    # At phone width the pages fit the screen (wide tables scroll in their own box).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    for name, url in [("5-phone-shard.png", shard_url), ("6-phone-jobs.png", base + "/ui/jobs"), ("7-phone-home.png", base + "/")]:
        driver.get(url)
        width = driver.execute_script("return window.innerWidth")
        check(width <= 400, "the phone emulation did not take: the page is %dpx wide" % width)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        driver.save_screenshot(os.path.join(shots, name))
        check(overflow <= 1, "%s is %dpx wider than a phone screen" % (url, overflow))

    # Logging out ends the session.
    click_and_load(driver.find_element(By.XPATH, "//button[contains(., 'Log out')]"))
    driver.get(base + "/")
    check(driver.current_url.endswith("/login"), "the session survived logging out")
    print(json.dumps(seen))
finally:
    driver.quit()
