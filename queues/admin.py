import json

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from common.errors import DomainError
from queues import config, staff
from queues.models import DEFAULT_QUEUE_ID, Customer, Queue, Registration, RegistrationEvent


class RegistrationEventInline(admin.TabularInline):
    model = RegistrationEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_status", "to_status", "actor", "reason")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "status", "enqueued_at", "matched_at", "ended_at", "left_reason")
    list_filter = ("status", "left_reason")
    search_fields = ("customer__customer_id", "customer__display_name", "=id")
    date_hierarchy = "enqueued_at"
    readonly_fields = [f.name for f in Registration._meta.fields]
    exclude = ("token_hash",)
    inlines = [RegistrationEventInline]

    def has_add_permission(self, request):
        return False  # visits start on the waiting page, not here


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("customer_id", "display_name", "created_at")
    search_fields = ("customer_id", "display_name")
    readonly_fields = ("customer_id", "created_at")


# --- Queues: staff configure the lines here or through /api/admin/queues ----------------

# The example in the help texts: a youth line in Korean, open 09:00-22:00 every
# day, that sends whoever still waits after 15 minutes to the general line.
HOURS_EXAMPLE = json.dumps([{"day": day, "opens": "09:00", "closes": "22:00"} for day in range(7)])
ALTERNATIVES_EXAMPLE = json.dumps(
    [{"label": {"ko": "청소년상담 1388", "en": "Youth helpline 1388"}, "phone": "1388"}], ensure_ascii=False
)


def example(text: str, value: str) -> str:
    """Return a help text with a copyable example on its own line (the admin shows help texts as HTML)."""
    return format_html("{}<br>Example: <code>{}</code>", text, value)


HELP = {
    "queue_id": "The queueId: lowercase letters, digits, - and _ (e.g. youth). It cannot change later.",
    "languages": "Language codes served, comma-separated, first = the default (e.g. ko or ko, en).",
    "timezone": "IANA name; hours and closed dates are read in it (default Asia/Seoul).",
    "hours": example(
        "Weekly opening hours as JSON: a list of {day, opens, closes}, day 0 = Monday … 6 = Sunday, times HH:MM "
        "in the queue's timezone; a close earlier than the open runs past midnight. Empty or null: open around "
        "the clock; [] keeps the queue closed. The example opens 09:00-22:00 every day.",
        HOURS_EXAMPLE,
    ),
    "closed_dates": 'Dates the queue stays closed, as JSON, in its timezone: e.g. ["2026-12-25", "2027-01-01"].',
    "max_waiting": "Most customers who may wait at once; empty = no cap. A full queue refuses joins.",
    "overflow_queue": "Whoever still waits after the overflow delay moves here, keeping their place in time.",
    "overflow_after_seconds": "Set together with the overflow queue; e.g. 900 = 15 minutes.",
    "urgent_head_start_seconds": "How far ahead an urgent customer is placed (default 600 = 10 minutes).",
    "wrap_up_seconds": "A counselor's pause after each call in this queue (default 60).",
    "alternatives": example(
        "Where to turn when closed or full, as JSON: a list of {label: {ko, en}, phone?, url?}, "
        "each with a phone number or an http(s) URL.",
        ALTERNATIVES_EXAMPLE,
    ),
}
# A refusal names the body's field (``alternatives[0].url``): show it on the form's field.
FORM_FIELD = {"name": "name_ko", "overflowQueueId": "overflow_queue", "body": None}


class QueueAdminForm(forms.ModelForm):
    """Every setting of a queue, checked by the very code the REST API uses (``queues.config``)."""

    # Declared fields take no initial value from the model's defaults: give them here.
    languages = forms.CharField(initial="ko, en", help_text=HELP["languages"])
    hours = forms.JSONField(required=False, help_text=HELP["hours"], widget=forms.Textarea(attrs={"rows": 4}))
    closed_dates = forms.JSONField(
        required=False, initial=list, help_text=HELP["closed_dates"], widget=forms.Textarea(attrs={"rows": 2})
    )
    alternatives = forms.JSONField(
        required=False, initial=list, help_text=HELP["alternatives"], widget=forms.Textarea(attrs={"rows": 4})
    )

    class Meta:
        model = Queue
        # Every setting the REST API has, with the overflow target as a choice of queue.
        fields = tuple("overflow_queue" if name == "overflow_queue_id" else name for name in staff.VALUE_FIELDS)
        help_texts = HELP
        labels = {"name_ko": "Name (Korean)", "name_en": "Name (English)", "queue_id": "Queue id"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["languages"] = ", ".join(self.instance.languages or ())
        if "overflow_queue" in self.fields and self.instance.pk:
            # A queue cannot overflow into itself; the cycle check covers the rest.
            self.fields["overflow_queue"].queryset = Queue.objects.exclude(pk=self.instance.pk)

    def clean(self):
        """Validate the whole queue as the REST API would; keep the cleaned fields for the save."""
        data = super().clean()
        if self.errors:
            return data  # a field the form itself refused (a number that is not one, bad JSON)
        body = self.body(data)
        try:
            self.queue_fields = config.queue_config_clean(body, partial=False)
            staff.queue_overflow_check(values={**self.current_values(), **self.queue_fields})
        except DomainError as exc:
            named = exc.extra.get("field", "body")
            field = named.split("[")[0].split(".")[0]
            field = FORM_FIELD.get(field, config.FIELDS.get(field, field))
            # Beside its field, "hours: hours[0].day must be …" need not say "hours:" again.
            detail = exc.detail.removeprefix(f"{named}: ") if field in self.fields else exc.detail
            self.add_error(field if field in self.fields else None, detail)
        return data

    def body(self, data: dict) -> dict:
        """Return the settings as the REST API's body names them."""
        overflow = data.get("overflow_queue")
        languages = [code.strip() for code in (data.get("languages") or "").split(",") if code.strip()]
        return {
            "queueId": data.get("queue_id", self.instance.queue_id),
            "name": {"ko": data.get("name_ko", ""), "en": data.get("name_en", "")},
            "languages": languages,
            "timezone": data.get("timezone"),
            "hours": data.get("hours"),
            "closedDates": data.get("closed_dates") or [],
            "maxWaiting": data.get("max_waiting"),
            "overflowQueueId": overflow.queue_id if overflow else None,
            "overflowAfterSeconds": data.get("overflow_after_seconds"),
            "urgentHeadStartSeconds": data.get("urgent_head_start_seconds"),
            "wrapUpSeconds": data.get("wrap_up_seconds"),
            "alternatives": data.get("alternatives") or [],
        }

    def current_values(self) -> dict:
        return {name: getattr(self.instance, name) for name in staff.VALUE_FIELDS}


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    """Create and edit queues; every save and delete goes through ``queues.staff`` as the REST API's do."""

    form = QueueAdminForm
    list_display = ("queue_id", "name_ko", "name_en", "languages", "open_hours", "max_waiting", "overflow")
    search_fields = ("queue_id", "name_ko", "name_en")
    fieldsets = (
        (None, {"fields": ("queue_id", "name_ko", "name_en", "languages", "timezone")}),
        ("When open", {"fields": ("hours", "closed_dates")}),
        ("Capacity and overflow", {"fields": ("max_waiting", "overflow_queue", "overflow_after_seconds")}),
        ("Urgency and wrap-up", {"fields": ("urgent_head_start_seconds", "wrap_up_seconds")}),
        ("When closed or full", {"fields": ("alternatives",)}),
    )

    @admin.display(description="hours")
    def open_hours(self, obj):
        if obj.hours is None:
            return "around the clock"
        return "closed" if not obj.hours else f"{len(obj.hours)} interval(s)"

    @admin.display(description="overflow")
    def overflow(self, obj):
        if obj.overflow_queue_id is None:
            return "—"
        return f"→ {obj.overflow_queue_id} after {obj.overflow_after_seconds} s"

    def get_readonly_fields(self, request, obj=None):
        return ("queue_id",) if obj is not None else ()

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes go one by one, through the same checks as the API
        return actions

    def save_model(self, request, obj, form, change):
        queue = staff.queue_store(fields=form.queue_fields, actor=actor(request), create=not change)
        obj.pk, obj._state.adding = queue.pk, False

    def save_related(self, request, form, formsets, change):
        pass  # a queue has no related rows to save here

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.queue_id == DEFAULT_QUEUE_ID:
            return False  # every join without a queueId lands here
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The API's refusal (in use, a target of overflow, has history) is the
        # reason to show, rather than the visits' rows one may not delete.
        refusals = [refusal.detail for queue in objs if (refusal := staff.queue_delete_refusal(queue=queue))]
        if refusals:
            return deleted, counts, set(), refusals
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        staff.queue_remove(queue_id=obj.queue_id, actor=actor(request))


def actor(request) -> str:
    return f"admin:{request.user.get_username()}"
