import { LightningElement, api, wire } from 'lwc';
import { getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import { STATUS_WORDS, day, money, valueOf } from 'c/billsyncFormat';

const ACCOUNT_FIELDS = [
    'Account.Billing_Status__c',
    'Account.Billing_Ends_On__c',
    'Account.MRR__c',
    'Account.ARR__c',
    'Account.Balance__c',
    'Account.Last_Invoice_Date__c',
    'Account.Billing_Review_Flag__c',
    'Account.Billing_Review_Reason__c'
];
// Churn risk (written with the account summary) is optional: an org deployed before it still shows the rest.
const OPTIONAL_FIELDS = ['Account.CurrencyIsoCode', 'Account.Churn_Risk__c', 'Account.Churn_Risk_Reasons__c'];
const HIGH_RISK = 70;
const MEDIUM_RISK = 40;

// billsync's records under the account, each read from its related list (a list the org lacks
// shows nothing, the others still do).
const SUBSCRIPTION_FIELDS = ['Name', 'Status__c', 'Ends_On__c', 'Start_Date__c', 'MRR__c', 'Next_Invoice_Date__c',
    'CurrencyIsoCode'].map((f) => `Billsync_Subscription__c.${f}`);
const INVOICE_FIELDS = ['Name', 'Issue_Date__c', 'Due_Date__c', 'Total__c', 'Balance__c', 'Status__c',
    'CurrencyIsoCode'].map((f) => `Invoice__c.${f}`);
const PAYMENT_FIELDS = ['Name', 'Payment_Date__c', 'Amount__c', 'Status__c', 'CurrencyIsoCode'].map(
    (f) => `Payment__c.${f}`
);
const CREDIT_NOTE_FIELDS = ['Name', 'Issue_Date__c', 'Total__c', 'Reason__c', 'CurrencyIsoCode'].map(
    (f) => `Credit_Note__c.${f}`
);
const TIMELINE_SIZE = 20;

export default class BillingAccountPanel extends LightningElement {
    @api recordId;

    account;
    error;
    subscriptions = [];
    invoices = [];
    payments = [];
    creditNotes = [];

    @wire(getRecord, { recordId: '$recordId', fields: ACCOUNT_FIELDS, optionalFields: OPTIONAL_FIELDS })
    wiredAccount({ data, error }) {
        this.account = data;
        this.error = error ? 'billsync cannot read this account\'s billing fields: ask an admin for the billsync permission set.' : undefined;
    }

    @wire(getRelatedListRecords, {
        parentRecordId: '$recordId', relatedListId: 'Billsync_Subscriptions__r', fields: SUBSCRIPTION_FIELDS
    })
    wiredSubscriptions({ data }) {
        this.subscriptions = data ? data.records : [];
    }

    @wire(getRelatedListRecords, { parentRecordId: '$recordId', relatedListId: 'Invoices__r', fields: INVOICE_FIELDS })
    wiredInvoices({ data }) {
        this.invoices = data ? data.records : [];
    }

    @wire(getRelatedListRecords, { parentRecordId: '$recordId', relatedListId: 'Payments__r', fields: PAYMENT_FIELDS })
    wiredPayments({ data }) {
        this.payments = data ? data.records : [];
    }

    @wire(getRelatedListRecords, {
        parentRecordId: '$recordId', relatedListId: 'Credit_Notes__r', fields: CREDIT_NOTE_FIELDS
    })
    wiredCreditNotes({ data }) {
        this.creditNotes = data ? data.records : [];
    }

    get loaded() {
        return Boolean(this.account);
    }

    get currency() {
        return valueOf(this.account, 'CurrencyIsoCode');
    }

    get status() {
        return valueOf(this.account, 'Billing_Status__c') || 'none';
    }

    get statusText() {
        const words = STATUS_WORDS[this.status] || this.status;
        const ends = valueOf(this.account, 'Billing_Ends_On__c');
        if (this.status === 'cancelling' && ends) {
            return `${words}: billed and served until ${day(ends)}`;
        }
        if (this.status === 'cancelled' && ends) {
            return `${words}: last day billed ${day(ends)}`;
        }
        return words;
    }

    get statusClass() {
        const tone = { active: 'success', cancelling: 'warning', past_due: 'error' }[this.status] || 'inverse';
        return `slds-badge slds-theme_${tone}`;
    }

    get hasSubscription() {
        return this.subscriptions.length > 0 || !['none', 'cancelled'].includes(this.status);
    }

    get mrr() {
        return money(valueOf(this.account, 'MRR__c'), this.currency);
    }

    get arr() {
        return money(valueOf(this.account, 'ARR__c'), this.currency);
    }

    get balance() {
        return money(valueOf(this.account, 'Balance__c'), this.currency);
    }

    get reviewReason() {
        return valueOf(this.account, 'Billing_Review_Flag__c') ? valueOf(this.account, 'Billing_Review_Reason__c') : null;
    }

    get churnRisk() {
        const value = valueOf(this.account, 'Churn_Risk__c');
        return value === null || value === undefined || value === '' ? null : Math.round(Number(value));
    }

    get hasChurnRisk() {
        return this.churnRisk !== null;
    }

    get churnRiskText() {
        const level = this.churnRisk >= HIGH_RISK ? 'high' : this.churnRisk >= MEDIUM_RISK ? 'medium' : 'low';
        return `${this.churnRisk} / 100 (${level})`;
    }

    get churnRiskClass() {
        const tone = this.churnRisk >= HIGH_RISK ? 'error' : this.churnRisk >= MEDIUM_RISK ? 'warning' : 'success';
        return `slds-badge slds-theme_${tone}`;
    }

    get churnReasons() {
        const text = valueOf(this.account, 'Churn_Risk_Reasons__c') || '';
        return text.split(';').map((r) => r.trim()).filter((r) => r).map((r, i) => ({ id: `reason-${i}`, text: r }));
    }

    get subscriptionRows() {
        return this.subscriptions.map((r) => {
            const status = valueOf(r, 'Status__c');
            const ends = valueOf(r, 'Ends_On__c');
            return {
                id: r.id,
                name: valueOf(r, 'Name'),
                status: (STATUS_WORDS[status] || status) + (ends ? ` until ${day(ends)}` : ''),
                mrr: money(valueOf(r, 'MRR__c'), valueOf(r, 'CurrencyIsoCode')),
                next: valueOf(r, 'Next_Invoice_Date__c') ? `next invoice ${day(valueOf(r, 'Next_Invoice_Date__c'))}` : ''
            };
        });
    }

    get timeline() {
        const events = [];
        for (const r of this.invoices) {
            const currency = valueOf(r, 'CurrencyIsoCode');
            const balance = Number(valueOf(r, 'Balance__c') || 0);
            events.push({
                id: r.id, on: valueOf(r, 'Issue_Date__c'), icon: 'standard:orders',
                text: `Invoice ${valueOf(r, 'Name')}: ${money(valueOf(r, 'Total__c'), currency)}`
                    + (balance > 0 ? `, ${money(balance, currency)} due ${day(valueOf(r, 'Due_Date__c'))}` : ', paid')
            });
        }
        for (const r of this.payments) {
            events.push({
                id: r.id, on: valueOf(r, 'Payment_Date__c'), icon: 'standard:currency',
                text: `Payment ${valueOf(r, 'Name')}: ${money(valueOf(r, 'Amount__c'), valueOf(r, 'CurrencyIsoCode'))}`
                    + (valueOf(r, 'Status__c') && valueOf(r, 'Status__c') !== 'succeeded' ? ` (${valueOf(r, 'Status__c').replace('_', ' ')})` : '')
            });
        }
        for (const r of this.creditNotes) {
            const reason = valueOf(r, 'Reason__c');
            events.push({
                id: r.id, on: valueOf(r, 'Issue_Date__c'), icon: 'standard:return_order',
                text: `Credit note ${valueOf(r, 'Name')}: ${money(valueOf(r, 'Total__c'), valueOf(r, 'CurrencyIsoCode'))}`
                    + (reason ? ` (${reason})` : '')
            });
        }
        for (const r of this.subscriptions) {
            if (valueOf(r, 'Start_Date__c')) {
                events.push({ id: `${r.id}-start`, on: valueOf(r, 'Start_Date__c'), icon: 'standard:contract',
                    text: `Subscription ${valueOf(r, 'Name')} started` });
            }
            if (valueOf(r, 'Ends_On__c')) {
                events.push({ id: `${r.id}-end`, on: valueOf(r, 'Ends_On__c'), icon: 'standard:contract',
                    text: `Subscription ${valueOf(r, 'Name')} ends (last day billed)` });
            }
        }
        return events
            .filter((e) => e.on)
            .sort((a, b) => (a.on < b.on ? 1 : a.on > b.on ? -1 : 0))
            .slice(0, TIMELINE_SIZE)
            .map((e) => ({ ...e, day: day(e.on) }));
    }

    get hasTimeline() {
        return this.timeline.length > 0;
    }
}
