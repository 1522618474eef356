"""The panel's POST forms (Flask-WTF: each one carries and checks a CSRF token).

GET filter forms are plain query strings parsed in ``filters.py``; they change nothing.
"""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (DecimalField, HiddenField, IntegerField, PasswordField, SelectField,
                     StringField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from repositories.validation import MAX_LABEL, MAX_USER_NAME

DEMO_KINDS = [SelectChoice("monte_carlo", "monte_carlo — sample a distribution"),
              SelectChoice("batch", "batch — simulated phases of jobs")]


class LoginForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=MAX_USER_NAME)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass


class StopForm(FlaskForm):
    confirmed = HiddenField(default="")


class DemoRunForm(FlaskForm):
    kind = SelectField("Kind", choices=DEMO_KINDS, default="monte_carlo")
    label = StringField("Label", validators=[Optional(), Length(max=MAX_LABEL)], default="demo run")
    iterations = IntegerField("Iterations (monte_carlo)", default=20_000_000,
                              validators=[Optional(), NumberRange(1, 10**9)])
    jobs_per_phase = IntegerField("Jobs per phase (batch)", default=40,
                                  validators=[Optional(), NumberRange(1, 10_000)])
    fail_rate = DecimalField("Failure rate (batch, 0–1)", default=0.05, places=None,
                             validators=[Optional(), NumberRange(0, 1)])

    def params(self) -> dict:
        """The job's params for the chosen kind (the runner validates them again)."""
        if self.kind.data == "monte_carlo":
            return {"iterations": self.iterations.data or 20_000_000}
        return {"jobs_per_phase": self.jobs_per_phase.data or 40,
                "fail_rate": float(self.fail_rate.data if self.fail_rate.data is not None else 0.05),
                "job_seconds": 0.05}
