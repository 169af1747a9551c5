from django.contrib import admin

from queues.models import Customer, Registration, RegistrationEvent


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
