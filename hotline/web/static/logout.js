// Sign out with the session's CSRF token (a plain form cannot send the header).
for (const form of document.querySelectorAll("form[action='/logout']")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await fetch("/logout", {
      method: "POST",
      headers: { "X-CSRF-Token": form.dataset.csrf },
      credentials: "same-origin",
      redirect: "manual",
    });
    window.location.assign("/login");
  });
}
