"""What several test modules share: builders, settings, the fake OpenAI server, workflow runs.

No test module imports another test module; they import from here."""
