from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.utils.html import format_html, format_html_join

from common.errors import DomainError
from matching import counselors, selectors
from matching.models import Counselor, CounselorEvent, Match, MatchEvent
from queues.admin import RegistrationAdmin
from queues.models import Registration
from queues.selectors import queue_languages


class CounselorCreateForm(forms.ModelForm):
    """Create the login and the counselor in one step."""

    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, help_text="The counselor logs in with this.")

    class Meta:
        model = Counselor
        fields = ("username", "password", "display_name")

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username=username).exists():
            raise forms.ValidationError("A user with that username already exists.")
        return username

    def clean_password(self):
        password = self.cleaned_data["password"]
        validate_password(password)
        return password


class CounselorSkillsForm(forms.ModelForm):
    """A counselor's name and skills; the skills are checked as PATCH /api/admin/counselors/{id} checks them."""

    languages = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each must be served by one of the queues chosen above.",
    )

    class Meta:
        model = Counselor
        fields = ("display_name", "queues", "languages")
        help_texts = {"queues": "The queues whose customers this counselor may be given."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["languages"].choices = [(code, code) for code in queue_languages()]

    def clean(self):
        data = super().clean()
        if "queues" in data and "languages" in data:
            try:
                counselors.counselor_skills_check(queues=list(data["queues"]), languages=data["languages"])
            except DomainError as exc:
                field = exc.extra.get("field", "languages")
                self.add_error(field, exc.detail.removeprefix(f"{field}: "))
        return data


class CounselorEventInline(admin.TabularInline):
    model = CounselorEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_status", "to_status", "actor", "reason")
    ordering = ("-at",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Counselor)
class CounselorAdmin(admin.ModelAdmin):
    form = CounselorSkillsForm
    list_display = ("__str__", "username", "status", "serves", "languages_served", "status_changed_at", "is_active")
    list_filter = ("status", "queues", "user__is_active")
    filter_horizontal = ("queues",)
    search_fields = ("user__username", "display_name", "counselor_id")
    readonly_fields = ("counselor_id", "status", "status_changed_at", "lease_expires_at")
    actions = ["activate", "deactivate"]
    inlines = [CounselorEventInline]

    @admin.display(ordering="user__username")
    def username(self, obj):
        return obj.user.get_username()

    @admin.display(description="queues")
    def serves(self, obj):
        return ", ".join(sorted(q.queue_id for q in obj.queues.all())) or "—"

    @admin.display(description="languages")
    def languages_served(self, obj):
        return ", ".join(obj.languages or ()) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("queues")

    @admin.display(boolean=True, ordering="user__is_active")
    def is_active(self, obj):
        return obj.user.is_active

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = CounselorCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("username", "password", "display_name")
        return (
            "counselor_id",
            "display_name",
            "queues",
            "languages",
            "status",
            "status_changed_at",
            "lease_expires_at",
        )

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            # The name only: the status has one writer (the matcher may have
            # changed it since this page was loaded) and the skills go through
            # their service in save_related.
            obj.save(update_fields=["display_name"])
            return
        created = counselors.counselor_create(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password"],
            display_name=form.cleaned_data.get("display_name", ""),
        )
        obj.pk, obj.user_id, obj.counselor_id = created.pk, created.user_id, created.counselor_id
        obj._state.adding = False

    def save_related(self, request, form, formsets, change):
        if not change:
            return
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)
        if {"queues", "languages"} & set(form.changed_data):
            # The same service as PATCH /api/admin/counselors/{id}: the dashboard hears SKILLS, the matcher looks again.
            counselors.counselor_skills_change(
                counselor_id=form.instance.counselor_id,
                queue_ids=[queue.queue_id for queue in form.cleaned_data["queues"]],
                languages=form.cleaned_data["languages"],
                actor=f"admin:{request.user.get_username()}",
            )

    @admin.action(description="Activate selected counselors")
    def activate(self, request, queryset):
        n = get_user_model().objects.filter(counselor__in=queryset).update(is_active=True)
        self.message_user(request, f"{n} counselor(s) activated.", messages.SUCCESS)

    @admin.action(description="Deactivate selected counselors (they can no longer log in or be matched)")
    def deactivate(self, request, queryset):
        n = get_user_model().objects.filter(counselor__in=queryset).update(is_active=False)
        self.message_user(request, f"{n} counselor(s) deactivated.", messages.SUCCESS)


class MatchEventInline(admin.TabularInline):
    model = MatchEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "what", "actor")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    list_display = ("id", "room_name", "counselor", "registration", "created_at", "ended_at", "end_reason")
    list_filter = ("end_reason",)
    search_fields = ("room_name", "counselor__user__username", "registration__customer__customer_id")
    inlines = [MatchEventInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Match._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class VisitMatchInline(admin.TabularInline):
    model = Match
    extra = 0
    can_delete = False
    fields = ("counselor", "created_at", "customer_joined_at", "counselor_joined_at", "ended_at", "end_reason")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class VisitAdmin(RegistrationAdmin):
    """The queue's registration admin plus the visit's matches and one readable timeline.

    Matching extends it (rather than the queue app) because the queue app
    knows nothing of matches.
    """

    readonly_fields = [*RegistrationAdmin.readonly_fields, "timeline"]
    inlines = [*RegistrationAdmin.inlines, VisitMatchInline]

    @admin.display(description="timeline")
    def timeline(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.what, e.actor, e.reason)
                for e in selectors.visit_timeline(registration=obj)
            ),
        )
        return format_html("<table><tr><th>when</th><th>what</th><th>who</th><th>why</th></tr>{}</table>", rows)


admin.site.unregister(Registration)
admin.site.register(Registration, VisitAdmin)
